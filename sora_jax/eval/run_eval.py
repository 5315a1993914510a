"""Evaluating a trained run on a split: the trainer's teacher-forced eval step (losses,
perplexity, accuracy), generated outputs scored against the references (BLEU and ROUGE for
captioning and seq2seq, exact match for VQA), and the image generator's metrics when the run has
one. Results are written as JSON and a markdown table into DIR/eval/."""

from __future__ import annotations

import json
import os

import jax
import numpy as np

from sora_jax.data import loader
from sora_jax.data.loader import components_config
from sora_jax.eval import text_metrics
from sora_jax.infer.text import Decoding, decode_ids
from sora_jax.models.sora import SoraModel
from sora_jax.train.metrics import summarize
from sora_jax.train.step import make_eval_step

GENERATED = ("caption", "seq2seq", "vqa")  # tasks whose outputs are also generated and scored
EVAL_DIR = "eval"


class _OneDevice:
    """What GANEvaluator needs of a backend, on one device."""

    def __init__(self):
        self._compiled = {}

    def run(self, fn, *args):
        if fn not in self._compiled:
            self._compiled[fn] = jax.jit(fn)
        return self._compiled[fn](*args)


def _references(tok, batch, row):
    ids = [int(t) for t, m in zip(batch["decoder_targets"][row], batch["decoder_mask"][row]) if m > 0]
    return tok.decode([t for t in ids if t != tok.eos_id])


def evaluate_run(run, workdir, split="validation", *, max_batches=0, decoding=Decoding()) -> dict:
    """name/metric -> value for every component of the run's data, plus gan/* for a generator."""
    config, model, tok, params = run.config, run.model, run.tokenizer, run.state.params
    eval_step = jax.jit(make_eval_step(model))
    encode = jax.jit(lambda p, b: model.apply({"params": p}, b.get("text"), b.get("text_valid"), b.get("image"),
                                              b.get("image_present"), method=SoraModel.encode))
    tasks = {name: entry["task"] for name, entry in components_config(config.data).items()}
    results = {}
    for name, dataset in loader.eval_datasets(config, tok, split).items():
        task = tasks[name]
        if task in ("t2i", "inpaint"):
            continue  # the generator's metrics below
        total, hypotheses, references = None, [], []
        for i, batch in enumerate(dataset):
            if max_batches and i >= max_batches:
                break
            out = jax.device_get(eval_step(params, batch))
            total = out if total is None else jax.tree.map(np.add, total, out)
            if task in GENERATED:
                rows = np.flatnonzero(batch["weight"] > 0)
                fields = {k: batch[k][rows] for k in ("text", "text_valid", "image", "image_present") if k in batch}
                enc = encode(params, fields)
                memory = (enc.memory, enc.memory_valid) if model.cfg.decoder.cross_attention else (None, None)
                ids = decode_ids(model, params, tok, [[tok.bos_id]] * len(rows), *memory, decoding)
                hypotheses += [tok.decode(x) for x in ids]
                references += [_references(tok, batch, r) for r in rows]
        for key, value in summarize(total).items():
            if key.startswith(("loss/", "perplexity/", "accuracy/")):
                results[f"{name}/{key}"] = value
        if hypotheses:
            if task == "vqa":
                results[f"{name}/exact_match"] = text_metrics.exact_match(hypotheses, references)
            else:
                results[f"{name}/bleu"] = text_metrics.bleu(hypotheses, references)
                for kind, value in text_metrics.rouge(hypotheses, references).items():
                    results[f"{name}/{kind}"] = value
            results[f"{name}/examples"] = len(hypotheses)
            results[f"{name}/sample"] = {"generated": hypotheses[0], "reference": references[0]}
    if run.gan is not None:
        from sora_jax.train.gan_eval import GANEvaluator
        results.update(GANEvaluator(config, run.gan, tok, workdir, _OneDevice()).evaluate(run.state))
    return results


def write_results(results: dict, workdir: str, split: str, step: int) -> tuple[str, str]:
    """DIR/eval/{split}_step{N}.json and .md; returns their paths."""
    directory = os.path.join(workdir, EVAL_DIR)
    os.makedirs(directory, exist_ok=True)
    stem = os.path.join(directory, f"{split}_step{step}")
    with open(stem + ".json", "w") as f:
        json.dump({"step": step, "split": split, **results}, f, indent=2)
    lines = [f"# Evaluation of step {step} on {split}", "", "| metric | value |", "|---|---|"]
    for key, value in results.items():
        if isinstance(value, float):
            lines.append(f"| {key} | {value:.4f} |")
        elif isinstance(value, int):
            lines.append(f"| {key} | {value} |")
    samples = {k: v for k, v in results.items() if isinstance(v, dict)}
    if samples:
        lines += ["", "| sample | generated | reference |", "|---|---|---|"]
        lines += [f"| {k} | {v['generated']} | {v['reference']} |" for k, v in samples.items()]
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    return stem + ".json", stem + ".md"
