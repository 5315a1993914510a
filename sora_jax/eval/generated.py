"""Generated outputs scored against the references: captions and seq2seq outputs by BLEU and
ROUGE, VQA answers by exact match. Shared by `python -m sora_jax.evaluate` and the trainer's
periodic eval (config.train.eval_generate_batches).

The generation function is pure over (params, batch): it runs jit-compiled on one device, or on
the trainer's mesh with the parameters and the batch keeping their shardings (the KV cache and
the decode loop are then partitioned along the batch and model axes by XLA).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sora_jax.eval import text_metrics
from sora_jax.infer.decode import beam_search, sample, strip
from sora_jax.infer.text import Decoding
from sora_jax.models.sora import SoraModel

GENERATED = ("caption", "seq2seq", "vqa")  # tasks whose outputs are generated and scored
INPUT_FIELDS = ("text", "text_valid", "image", "image_present")
REFERENCE_FIELDS = ("weight", "decoder_targets", "decoder_mask")


def make_generate_fn(model, tok, max_len: int, decoding: Decoding = Decoding()):
    """(params, batch) -> batch's reference fields plus "tokens" [B, max_len] and "lengths" [B]:
    the encoder side once, then decoding from BOS (greedy, sampled or beam search)."""
    def generate(params, batch):
        enc = model.apply({"params": params}, batch.get("text"), batch.get("text_valid"), batch.get("image"),
                          batch.get("image_present"), method=SoraModel.encode)
        memory = (enc.memory, enc.memory_valid) if model.cfg.decoder.cross_attention else (None, None)
        B = batch["weight"].shape[0]
        bos = jnp.full((B,), tok.bos_id, jnp.int32)
        if decoding.beam > 0:
            tokens, lengths, _ = beam_search(model, params, bos, *memory, beam_width=decoding.beam, max_len=max_len,
                                             eos_id=tok.eos_id, pad_id=tok.pad_id, alpha=decoding.length_penalty)
        else:
            tokens, lengths = sample(model, params, bos[:, None], jnp.ones((B,), jnp.int32), *memory,
                                     max_len=max_len, eos_id=tok.eos_id, pad_id=tok.pad_id,
                                     rng=jax.random.key(decoding.seed), temperature=decoding.temperature,
                                     top_k=decoding.top_k, top_p=decoding.top_p)
        return {**{k: batch[k] for k in REFERENCE_FIELDS}, "tokens": tokens, "lengths": lengths}
    return generate


def generation_inputs(batch) -> dict:
    """The fields make_generate_fn reads."""
    return {k: batch[k] for k in INPUT_FIELDS + REFERENCE_FIELDS if k in batch}


def texts(tok, out) -> tuple[list[str], list[str]]:
    """(hypotheses, references) for the rows of weight > 0 of a make_generate_fn result."""
    out = jax.device_get(out)
    rows = np.flatnonzero(np.asarray(out["weight"]) > 0)
    generated = strip(out["tokens"][rows], out["lengths"][rows], 1, tok.eos_id)
    references = []
    for r in rows:
        ids = [int(t) for t, m in zip(out["decoder_targets"][r], out["decoder_mask"][r]) if m > 0]
        references.append(tok.decode([t for t in ids if t != tok.eos_id]))
    return [tok.decode(ids) for ids in generated], references


def score(task: str, hypotheses: list[str], references: list[str]) -> dict:
    """Exact match for VQA, BLEU and ROUGE-1/2/L otherwise (captions also get exact match: on
    a closed world such as shapes a caption is either right or wrong), the number of examples
    and one sample."""
    if not hypotheses:
        return {}
    results = {"exact_match": text_metrics.exact_match(hypotheses, references)}
    if task != "vqa":
        results["bleu"] = text_metrics.bleu(hypotheses, references)
        results.update(text_metrics.rouge(hypotheses, references))
    results["examples"] = len(hypotheses)
    results["sample"] = {"generated": hypotheses[0], "reference": references[0]}
    return results
