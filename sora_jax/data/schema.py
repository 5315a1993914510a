"""The fixed-shape example every task builder produces, so that tasks can share a batch.

A field exists when its size in the ExampleSpec is non-zero; builders fill what their task
has and `ExampleSpec.complete` adds the rest with "absent" values:

  task_id []                 int32   index into TASKS
  weight []                  float32 1 for a real example, 0 for padding (last eval batch)
  num_skipped []             int32   bad records skipped just before this one (on_error="skip")
  text [S], text_valid [S]   int32, bool      encoder-side text (source, question, prompt)
  image [H, W, C]            float32 in [-1, 1], NHWC
  image_present []           bool
  inpaint_mask [H, W, 1]     float32 1 where pixels are missing (inpainting), else 0
  decoder_inputs [T], decoder_targets [T]   int32   teacher forcing: targets = inputs shifted left
  decoder_mask [T]           float32 loss weight per target position
  decoder_segment_ids [T]    int32   packed documents 1, 2, ...; 0 is padding
  decoder_positions [T]      int32   position within its document
  label []                   int32   class id, -1 when the example has none
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

TASKS = ("lm", "seq2seq", "classify", "caption", "vqa", "t2i", "inpaint")


@dataclasses.dataclass(frozen=True)
class ExampleSpec:
    text_len: int = 0
    decoder_len: int = 0
    image_size: int = 0
    channels: int = 3

    @functools.cached_property
    def _fields(self):
        return self._compute_fields()

    def fields(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        return self._fields

    def _compute_fields(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        out = {"task_id": ((), np.int32), "weight": ((), np.float32), "num_skipped": ((), np.int32),
               "label": ((), np.int32)}
        if self.text_len:
            out.update(text=((self.text_len,), np.int32), text_valid=((self.text_len,), np.bool_))
        if self.image_size:
            size = self.image_size
            out.update(image=((size, size, self.channels), np.float32), image_present=((), np.bool_),
                       inpaint_mask=((size, size, 1), np.float32))
        if self.decoder_len:
            for name, dtype in (("decoder_inputs", np.int32), ("decoder_targets", np.int32),
                                ("decoder_mask", np.float32), ("decoder_segment_ids", np.int32),
                                ("decoder_positions", np.int32)):
                out[name] = ((self.decoder_len,), dtype)
        return {k: (shape, np.dtype(dtype)) for k, (shape, dtype) in out.items()}

    def empty(self) -> dict[str, np.ndarray]:
        """An all-absent example (used for padding and as defaults)."""
        out = {name: np.zeros(shape, dtype) for name, (shape, dtype) in self.fields().items()}
        out["label"] = np.array(-1, np.int32)
        return out

    def complete(self, partial: dict, task: str) -> dict[str, np.ndarray]:
        """Fills the fields the task did not produce; checks shapes of those it did."""
        fields = self.fields()
        out = {}
        for name, value in partial.items():
            if name not in fields:
                raise ValueError(f"task {task!r} produced field {name!r}, which this ExampleSpec {self} lacks")
            shape, dtype = fields[name]
            value = np.asarray(value, dtype)
            if value.shape != shape:
                raise ValueError(f"task {task!r} produced {name} of shape {value.shape}, expected {shape}")
            out[name] = value
        for name, (shape, dtype) in fields.items():  # absent fields: allocated only when missing
            if name not in out:
                out[name] = np.zeros(shape, dtype)
        out["task_id"] = np.array(TASKS.index(task), np.int32)
        out["weight"] = np.array(1.0, np.float32)
        if "label" not in partial:
            out["label"] = np.array(-1, np.int32)
        return out

    def require(self, task: str, *, text=False, decoder=False, image=False):
        missing = [n for n, need, have in (("text_len", text, self.text_len), ("decoder_len", decoder, self.decoder_len),
                                           ("image_size", image, self.image_size)) if need and not have]
        if missing:
            raise ValueError(f"task {task!r} needs data.{', data.'.join(missing)} > 0")


def stack_examples(examples, batch_size: int | None = None, spec: ExampleSpec | None = None):
    """Stacks examples into a batch; pads to batch_size with weight-0 empty examples if given."""
    examples = list(examples)
    if batch_size is not None and len(examples) < batch_size:
        examples += [spec.empty() for _ in range(batch_size - len(examples))]
    return {name: np.stack([e[name] for e in examples]) for name in examples[0]}
