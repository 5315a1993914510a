"""What every task builder shares: reading typed fields from a record (with errors that name
the file, record and field), tokenising to fixed lengths, and decoder teacher-forcing arrays."""

from __future__ import annotations

import dataclasses

import numpy as np

from sora_jax.data.errors import DataError
from sora_jax.data.images import ImageTransform, decode_image
from sora_jax.data.schema import ExampleSpec


@dataclasses.dataclass(frozen=True)
class FieldNames:
    """Which record field holds what (overridable per dataset in config: data.fields.*)."""

    text: str = "text"
    source: str = "source"
    target: str = "target"
    image: str = "image"
    label: str = "label"
    caption: str = "caption"
    question: str = "question"
    answer: str = "answer"
    qa: str = "qa"  # a list of [question, answer] pairs (one is picked per example)


class TaskBuilder:
    """record (dict) + rng -> partial example (see schema.py). Subclasses implement `build`."""

    task = ""

    def __init__(self, spec: ExampleSpec, tokenizer, fields: FieldNames = FieldNames(),
                 image_transform: ImageTransform | None = None, **options):
        self.spec, self.tokenizer, self.fields = spec, tokenizer, fields
        self.image_transform = image_transform or (ImageTransform(spec.image_size, spec.channels)
                                                   if spec.image_size else None)
        self.options = options
        self.check_spec()

    def check_spec(self):
        """Raise ValueError if the ExampleSpec lacks a field this task needs."""

    def build(self, record: dict, rng: np.random.Generator) -> dict:
        raise NotImplementedError(f"{type(self).__name__}.build")

    def __call__(self, record: dict, rng: np.random.Generator) -> dict:
        return self.build(record, rng)

    # -- typed field access ------------------------------------------------------------------
    def error(self, record, message, field=None):
        return DataError(message, file=record.get("_file"), record=record.get("_record"), field=field)

    def get(self, record, field):
        if field not in record:
            present = ", ".join(sorted(k for k in record if not k.startswith("_")))
            raise self.error(record, f"missing field (the record has: {present})", field)
        return record[field]

    def get_text(self, record, field) -> str:
        return self.as_text(record, self.get(record, field), field)

    def as_text(self, record, value, field) -> str:
        """Checks that `value` (read from `field`) is a non-empty string."""
        if not isinstance(value, str):
            raise self.error(record, f"expected text, got {type(value).__name__}", field)
        if not value.strip():
            raise self.error(record, "empty text", field)
        return value

    def get_label(self, record, field, num_classes: int | None = None) -> int:
        value = self.get(record, field)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)  # TSV fields arrive as strings
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise self.error(record, f"expected an integer class id, got {type(value).__name__} {value!r}", field)
        if value < 0 or (num_classes and value >= num_classes):
            raise self.error(record, f"class id {value} outside [0, {num_classes})", field)
        return int(value)

    def get_image(self, record, field, rng) -> np.ndarray:
        image = decode_image(self.get(record, field), file=record.get("_file"), record=record.get("_record"),
                             field=field)
        return self.image_transform(image, rng)

    # -- token arrays ------------------------------------------------------------------------
    def encoder_tokens(self, text: str, length: int):
        return encoder_tokens(self.tokenizer, text, length)

    def decoder_arrays(self, text: str, length: int) -> dict:
        """Teacher forcing for one target text: inputs [bos] t, targets t [eos], padded to length."""
        tok = self.tokenizer
        ids = [tok.bos_id] + tok.encode(text) + [tok.eos_id]
        return pad_decoder(np.asarray(ids[:-1]), np.asarray(ids[1:]), length, tok.pad_id)


def encoder_tokens(tok, text: str, length: int):
    """[bos] text [eos], truncated (keeping eos) and padded: (ids [length], valid [length])."""
    ids = [tok.bos_id] + tok.encode(text)[: max(0, length - 2)] + [tok.eos_id]
    ids = ids[:length]
    out = np.full(length, tok.pad_id, np.int32)
    out[: len(ids)] = ids
    return out, np.arange(length) < len(ids)


def pad_decoder(inputs, targets, length: int, pad_id: int) -> dict:
    """Truncates/pads one document's teacher-forcing arrays into the fixed decoder fields."""
    n = min(len(inputs), length)
    out = {"decoder_inputs": np.full(length, pad_id, np.int32), "decoder_targets": np.full(length, pad_id, np.int32),
           "decoder_mask": np.zeros(length, np.float32), "decoder_segment_ids": np.zeros(length, np.int32),
           "decoder_positions": np.zeros(length, np.int32)}
    out["decoder_inputs"][:n] = inputs[:n]
    out["decoder_targets"][:n] = targets[:n]
    out["decoder_mask"][:n] = 1.0
    out["decoder_segment_ids"][:n] = 1
    out["decoder_positions"][:n] = np.arange(n)
    return out
