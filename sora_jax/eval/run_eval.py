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
from sora_jax.eval import generated
from sora_jax.infer.text import Decoding
from sora_jax.train.metrics import summarize
from sora_jax.train.step import make_eval_step

EVAL_DIR = "eval"


class _OneDevice:
    """What GANEvaluator needs of a backend, on one device."""

    def __init__(self):
        self._compiled = {}

    def run(self, fn, *args):
        if fn not in self._compiled:
            self._compiled[fn] = jax.jit(fn)
        return self._compiled[fn](*args)


def evaluate_run(run, workdir, split="validation", *, max_batches=0, decoding=Decoding()) -> dict:
    """name/metric -> value for every component of the run's data, plus gan/* for a generator."""
    config, model, tok, params = run.config, run.model, run.tokenizer, run.state.params
    device = _OneDevice()
    eval_step = make_eval_step(model)
    max_len = min(model.cfg.decoder.max_len, config.data.decoder_len + 1)  # BOS + the longest target
    generate_fn = generated.make_generate_fn(model, tok, max_len, decoding)
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
            out = jax.device_get(device.run(eval_step, params, batch))
            total = out if total is None else jax.tree.map(np.add, total, out)
            if task in generated.GENERATED:
                hyp, ref = generated.texts(tok, device.run(generate_fn, params, generated.generation_inputs(batch)))
                hypotheses, references = hypotheses + hyp, references + ref
        for key, value in summarize(total).items():
            if key.startswith(("loss/", "perplexity/", "accuracy/")):
                results[f"{name}/{key}"] = value
        for key, value in generated.score(task, hypotheses, references).items():
            results[f"{name}/{key}"] = value
    if run.gan is not None:
        from sora_jax.train.gan_eval import GANEvaluator
        results.update(GANEvaluator(config, run.gan, tok, workdir, device).evaluate(run.state))
    return results


def write_results(results: dict, workdir: str, split: str, step: int, *, beam: int = 0,
                  max_batches: int = 0) -> tuple[str, str]:
    """DIR/eval/{split}_step{N}[_beam{K}][_batches{M}].json and .md; returns their paths. The
    options that change the figures are in the name, so evaluations made otherwise are kept."""
    directory = os.path.join(workdir, EVAL_DIR)
    os.makedirs(directory, exist_ok=True)
    name = f"{split}_step{step}" + (f"_beam{beam}" if beam else "") + (f"_batches{max_batches}" if max_batches else "")
    stem = os.path.join(directory, name)
    with open(stem + ".json", "w") as f:
        json.dump({"step": step, "split": split, "beam": beam, "max_batches": max_batches, **results}, f, indent=2)
    options = ", ".join(([f"beam {beam}"] if beam else []) + ([f"{max_batches} batch(es) per component"]
                                                               if max_batches else []))
    lines = [f"# Evaluation of step {step} on {split}" + (f" ({options})" if options else ""), "",
             "| metric | value |", "|---|---|"]
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
