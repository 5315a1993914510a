"""Text tasks from a trained run: caption an image, answer a question about it, continue text,
seq2seq (translate, summarise, chat) and classify.

Requests are turned into model inputs by the data pipeline's own task builders (same
tokenisation, image transform and absent-field conventions as in training); the encoder side
runs once per batch, then decoding runs with the KV cache (sora_jax.infer.decode).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from sora_jax.data.images import ImageTransform
from sora_jax.data.loader import components_config, example_spec
from sora_jax.data.tasks import make_builder
from sora_jax.infer.decode import beam_search, sample, strip, unrolled_layers
from sora_jax.models.sora import SoraModel

# Command task -> the training task it needs, and how a request becomes a record for its builder.
TEXT_TASKS = {"caption": "caption", "vqa": "vqa", "complete": "lm", "seq2seq": "seq2seq", "chat": "seq2seq",
              "classify": "classify"}
_REQUIRED = {"caption": ("image",), "vqa": ("image", "question"), "complete": ("prompt",), "seq2seq": ("input",),
             "chat": ("input",), "classify": ()}


class RequestError(ValueError):
    """A request the run cannot serve (one line; the commands exit with code 2)."""


@dataclasses.dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 0  # 0: up to the decoder's context
    beam: int = 0  # > 0: beam search of that width (else greedy / sampling)
    length_penalty: float = 0.0  # beam search: GNMT alpha
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0


def _record(task, request):
    for key in _REQUIRED[task]:
        value = request.get(key)  # a string, or an image array (an in-memory request)
        if value is None or (isinstance(value, str) and not value):
            raise RequestError(f"task {task}: the request needs {key!r}")
    if task == "caption":
        return {"image": request["image"], "caption": "-"}
    if task == "vqa":
        return {"image": request["image"], "question": request["question"], "answer": "-"}
    if task in ("seq2seq", "chat"):
        return {"source": request["input"], "target": "-"}
    if task == "classify":
        record = {"label": 0}
        for key in ("text", "image"):
            if request.get(key) is not None and not (isinstance(request[key], str) and not request[key]):
                record[key] = request[key]
        if len(record) == 1:
            raise RequestError("task classify: the request needs 'text' or 'image'")
        return record
    return {}


def label_names(config) -> list[str] | None:
    d = config.data
    names = {entry["dataset"] for entry in components_config(d).values() if entry["task"] == "classify"}
    if names == {"shapes"}:
        from sora_jax.data.datasets.shapes import label_names as shapes_labels
        return list(shapes_labels(d.shapes.label_kind))
    if names == {"digits"}:
        from sora_jax.data.datasets.digits import NUMBER_WORDS
        return list(NUMBER_WORDS)
    return None


class TextTasks:
    def __init__(self, run):
        self.run, self.config, self.tok = run, run.config, run.tokenizer
        # Converted once here, not inside every jitted decode call (see unrolled_layers).
        self.model, self.params = unrolled_layers(run.model, run.state.params)
        self.spec = example_spec(self.config.data)
        self.trained = {entry["task"] for entry in components_config(self.config.data).values()}
        transform = ImageTransform(self.spec.image_size, self.spec.channels) if self.spec.image_size else None
        self._transform = transform
        self._encode = jax.jit(self._encode_fn)

    def check(self, task):
        needed = TEXT_TASKS[task]
        if needed not in self.trained:
            raise RequestError(f"--task={task}: the run was trained on {', '.join(sorted(self.trained))}, "
                               f"not {needed}")

    def examples(self, task, requests):
        """The batch the training pipeline would build for these requests (decoder fields unused)."""
        builder = make_builder(TEXT_TASKS[task], self.spec, self.tok, image_transform=self._transform,
                               num_classes=self.model.cfg.num_classes or None)
        rng = np.random.default_rng(0)
        rows = []
        for request in requests:
            try:
                record = {**_record(task, request), "_file": request.get("_file"), "_record": request.get("_record")}
            except RequestError as e:
                if request.get("_file"):  # a batch file's request: say which line
                    raise RequestError(f"{request['_file']}:{request.get('_record')}: {e}") from None
                raise
            rows.append(self.spec.complete(builder(record, rng) if task != "complete" else {}, TEXT_TASKS[task]))
        return {k: np.stack([r[k] for r in rows]) for k in rows[0]}

    def _encode_fn(self, params, batch):
        text = batch.get("text")
        image = batch.get("image")
        if text is None and image is None:
            return None
        return self.model.apply({"params": params}, text, batch.get("text_valid"), image,
                                batch.get("image_present"), method=SoraModel.encode)

    def __call__(self, task, requests, decoding: Decoding = Decoding()) -> list[str]:
        self.check(task)
        batch = self.examples(task, requests)
        params = self.params
        fields = {k: batch[k] for k in ("text", "text_valid", "image", "image_present") if k in batch}
        encoded = self._encode(params, fields)
        if task == "classify":
            logits = self.model.apply({"params": params}, encoded.pooled, method=SoraModel.classify)
            names = label_names(self.config)
            ids = np.asarray(jnp.argmax(logits, -1))
            return [names[i] if names and i < len(names) else str(int(i)) for i in ids]
        memory = valid = None
        if encoded is not None and self.model.cfg.decoder.cross_attention:
            memory, valid = encoded.memory, encoded.memory_valid
        return self._decode(task, requests, memory, valid, decoding)

    def _decode(self, task, requests, memory, valid, decoding):
        tok = self.tok
        prompts = [[tok.bos_id] + (tok.encode(r["prompt"]) if task == "complete" else []) for r in requests]
        if decoding.beam > 0 and task == "complete":
            raise RequestError("--beam is for caption, vqa, seq2seq and chat (a prompted continuation samples)")
        return [tok.decode(ids) for ids in decode_ids(self.model, self.params, tok, prompts, memory, valid,
                                                      decoding)]


def decode_ids(model, params, tok, prompts, memory, valid, decoding: Decoding) -> list[list[int]]:
    """Generated token ids per row (prompt and EOS removed). prompts: lists of ids starting with
    BOS; beam search needs each to be BOS alone."""
    B = len(prompts)
    context = model.cfg.decoder.max_len
    longest = max(map(len, prompts))
    if longest >= context:
        raise RequestError(f"the prompt has {longest} tokens; the decoder's context is {context}")
    max_len = context if not decoding.max_new_tokens else min(context, longest + decoding.max_new_tokens)
    if decoding.beam > 0:
        if longest > 1:
            raise RequestError("beam search starts from BOS alone (no prompt)")
        out, lengths, _ = _beam(model, params, jnp.full((B,), tok.bos_id, jnp.int32), memory, valid, decoding.beam,
                                max_len, tok.eos_id, tok.pad_id, decoding.length_penalty)
        prompt_len = np.ones(B, np.int32)
    else:
        prompt = np.full((B, longest), tok.pad_id, np.int32)
        for i, p in enumerate(prompts):
            prompt[i, :len(p)] = p
        prompt_len = np.asarray([len(p) for p in prompts], np.int32)
        out, lengths = _sample(model, params, jnp.asarray(prompt), jnp.asarray(prompt_len), memory, valid, max_len,
                               tok.eos_id, tok.pad_id, jax.random.key(decoding.seed), decoding.temperature,
                               decoding.top_k, decoding.top_p)
    return strip(out, lengths, prompt_len, tok.eos_id)


@functools.partial(jax.jit, static_argnames=("model", "max_len", "eos_id", "pad_id", "temperature", "top_k", "top_p"))
def _sample(model, params, prompt, prompt_len, memory, valid, max_len, eos_id, pad_id, rng, temperature, top_k, top_p):
    return sample(model, params, prompt, prompt_len, memory, valid, max_len=max_len, eos_id=eos_id, pad_id=pad_id,
                  rng=rng, temperature=temperature, top_k=top_k, top_p=top_p)


@functools.partial(jax.jit, static_argnames=("model", "beam_width", "max_len", "eos_id", "pad_id", "alpha"))
def _beam(model, params, bos, memory, valid, beam_width, max_len, eos_id, pad_id, alpha):
    return beam_search(model, params, bos, memory, valid, beam_width=beam_width, max_len=max_len, eos_id=eos_id,
                       pad_id=pad_id, alpha=alpha)
