"""The image generator's evaluation and sample grids during training.

Metrics (under "gan/" in metrics.jsonl, split "eval"), on up to gan.eval_examples validation rows,
from the EMA generator with fixed noise:
  fid             Fréchet distance between judge features of generated and real images (t2i rows)
  cond_accuracy   share of generated images the judge assigns to the prompted class (t2i rows)
  judge_real_accuracy   the same for the real images of those prompts (the judge's own accuracy)
  hole_l1, hole_psnr, mean_fill_hole_l1, hole_l1_ratio   inpaint rows, against the ground truth
The judge is the project's classifier trained on the run's real training images (no pretrained
Inception weights exist offline); it is trained once and kept under DIR/judge/.
"""

from __future__ import annotations

import json
import logging
import os

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from sora_jax.data import loader
from sora_jax.data.loader import components_config
from sora_jax.data.tasks.common import encoder_tokens
from sora_jax.gan import conditional_accuracy, frechet_distance, hole_psnr, judge_features, judge_predict
from sora_jax.gan.judge import Judge, train_judge
from sora_jax.infer.images import grid, save_png
from sora_jax.train.gan import GAN_TASKS, INPAINT, T2I

log = logging.getLogger(__name__)
JUDGE_DIR = "judge"
SAMPLES_DIR = "samples"


def _gan_components(config, tokenizer, split):
    return [c for c in loader.make_components(config.data, split, tokenizer, train=False)
            if c.builder.task in GAN_TASKS]


def judge_for_run(config, tokenizer, workdir, *, retrain=False):
    """(Judge, params) trained on the run's real training images, cached in DIR/judge/; None
    when the data carries no class labels."""
    g = config.gan
    directory = os.path.join(workdir, JUDGE_DIR)
    meta_path, params_path = os.path.join(directory, "meta.json"), os.path.join(directory, "params.msgpack")
    images, labels = [], []
    rng = np.random.default_rng(config.seed)
    num_classes = 0
    for component in _gan_components(config, tokenizer, "train"):
        num_classes = max(num_classes, int(component.builder.options.get("num_classes") or 0))
        for i in range(min(len(component.source), g.judge_examples)):
            example = component.builder(component.source[i], rng)
            if example.get("label", -1) >= 0:
                images.append(example["image"])
                labels.append(int(example["label"]))
    if not labels or num_classes < 2:
        return None
    model = Judge(num_classes, width=g.judge_width)
    wanted = {"num_classes": num_classes, "width": g.judge_width, "steps": g.judge_steps, "examples": len(labels),
              "image_shape": list(np.shape(images[0]))}
    template = nn.unbox(model.init(jax.random.key(0), jnp.zeros((1,) + np.shape(images[0])))["params"])
    if not retrain and os.path.exists(meta_path) and os.path.exists(params_path):
        with open(meta_path) as f:
            saved = json.load(f)
        if {k: saved.get(k) for k in wanted} == wanted:
            with open(params_path, "rb") as f:
                return model, flax.serialization.from_bytes(jax.tree.map(np.asarray, template), f.read())
    model, params = train_judge(np.stack(images), np.asarray(labels), num_classes, steps=g.judge_steps,
                                width=g.judge_width, seed=config.seed)
    if jax.process_index() == 0:
        os.makedirs(directory, exist_ok=True)
        with open(params_path + ".tmp", "wb") as f:
            f.write(flax.serialization.to_bytes(jax.device_get(params)))
        os.replace(params_path + ".tmp", params_path)
        with open(meta_path, "w") as f:
            json.dump(wanted, f)
    return model, params


def validation_rows(config, tokenizer, limit):
    """Up to `limit` GAN rows of the validation split (taken in turn from each GAN component):
    text, text_valid, image, known, task_id, label."""
    keep = ("text", "text_valid", "image", "inpaint_mask", "task_id", "label")
    rows = {k: [] for k in keep}
    count = 0
    # Every process reads the same rows: they go into one computation over the whole mesh.
    datasets = {name: d for name, d in loader.eval_datasets(config, tokenizer, process_index=0,
                                                             process_count=1).items()
                if components_config(config.data)[name]["task"] in GAN_TASKS}
    share = -(-limit // max(len(datasets), 1))
    for dataset in datasets.values():
        taken = 0
        for batch in dataset:
            mask = (batch["weight"] > 0) & (np.cumsum(batch["weight"] > 0) <= share - taken)
            for k in keep:
                rows[k].append(batch[k][mask])
            taken += int(mask.sum())
            if taken >= share:
                break
        count += taken
    if not count:
        return None
    out = {k: np.concatenate(v)[:limit] for k, v in rows.items()}
    inpaint = (out["task_id"] == INPAINT).astype(np.float32)[:, None, None, None]
    out["known"] = inpaint * (1.0 - out.pop("inpaint_mask"))
    return out


class GANEvaluator:
    """Generates with the EMA generator through the backend (sharded like training)."""

    def __init__(self, config, parts, tokenizer, workdir, backend):
        self.config, self.parts, self.tokenizer, self.workdir, self.backend = config, parts, tokenizer, workdir, backend
        self._judge = None
        self._rows = None
        self.components = {name for name, e in components_config(config.data).items() if e["task"] in GAN_TASKS}

        def generate(params, ema_params, z, text, text_valid, image, known):
            cond = parts.condition(params, {"text": text, "text_valid": text_valid})
            return parts.sample(ema_params, z, cond, image, known)
        self._generate = generate

    def _sample(self, state, rows, seed):
        params, ema = state.params, state.gan.ema_params
        z = jax.random.normal(jax.random.key(seed), (len(rows["text"]), self.parts.cfg.z_dim))
        out = []
        size = self.config.data.eval_batch_size
        for i in range(0, len(rows["text"]), size):
            part = {k: rows[k][i:i + size] for k in ("text", "text_valid", "image", "known")}
            out.append(np.asarray(self.backend.run(self._generate, params, ema, z[i:i + size], part["text"],
                                                   part["text_valid"], part["image"], part["known"])))
        return np.concatenate(out)

    def evaluate(self, state) -> dict:
        g = self.config.gan
        if self._rows is None:
            self._rows = validation_rows(self.config, self.tokenizer, g.eval_examples)
            self._judge = judge_for_run(self.config, self.tokenizer, self.workdir)
            if self._judge is None:
                log.info("the GAN data has no class labels: FID and conditional accuracy are not computed")
        rows = self._rows
        if rows is None:
            return {}
        generated = self._sample(state, rows, self.config.seed + 1)
        results = {}
        t2i = rows["task_id"] == T2I
        if self._judge is not None and t2i.sum() >= 2:
            model, params = self._judge
            real_f = judge_features(model, params, rows["image"][t2i])
            fake_f = judge_features(model, params, generated[t2i])
            results["gan/fid"] = frechet_distance(fake_f, real_f)
            labelled = rows["label"][t2i] >= 0
            if labelled.any():
                prompted = rows["label"][t2i][labelled]
                predicted = judge_predict(model, params, generated[t2i][labelled])
                results["gan/cond_accuracy"] = conditional_accuracy(predicted, prompted)
                # The judge on the real images of the same prompts: the ceiling of the above.
                real = judge_predict(model, params, rows["image"][t2i][labelled])
                results["gan/judge_real_accuracy"] = conditional_accuracy(real, prompted)
        inpaint = rows["task_id"] == INPAINT
        if inpaint.any():
            results.update(hole_metrics(generated[inpaint], rows["image"][inpaint], rows["known"][inpaint]))
        return results

    def write_samples(self, state, step, writer):
        """Fixed prompts x fixed noise (t2i), and original | masked | completed validation rows
        (inpainting), as PNGs under DIR/samples/ and images in TensorBoard."""
        g = self.config.gan
        paths = []
        if g.sample_prompts:
            rows = prompt_rows(self.tokenizer, list(g.sample_prompts), g.samples_per_prompt,
                               self.config.data.text_len, self.parts.cfg)
            images = self._sample(state, rows, self.config.seed + 2)
            paths.append(self._write(grid(images, g.samples_per_prompt, scale=g.sample_scale), "t2i", step, writer))
        if self.parts.cfg.inpaint:
            if self._rows is None:
                self._rows = validation_rows(self.config, self.tokenizer, g.eval_examples)
            rows = self._rows
            if rows is not None and (rows["task_id"] == INPAINT).any():
                idx = np.flatnonzero(rows["task_id"] == INPAINT)[:g.inpaint_panels]
                part = {k: v[idx] for k, v in rows.items()}
                completed = self._sample(state, part, self.config.seed + 3)
                panels = inpaint_panels(part["image"], part["known"], completed)
                paths.append(self._write(grid(panels, 3, scale=g.sample_scale), "inpaint", step, writer))
        return paths

    def _write(self, pixels, kind, step, writer):
        path = os.path.join(self.workdir, SAMPLES_DIR, f"{kind}_{step:07d}.png")
        if jax.process_index() == 0:
            save_png(pixels, path)
            writer.image(f"samples/{kind}", pixels, step)
        return path


def prompt_rows(tokenizer, prompts, per_prompt, text_len, gan_cfg) -> dict:
    """Each prompt repeated per_prompt times, as generator inputs with nothing known."""
    ids, valid = zip(*(encoder_tokens(tokenizer, p, text_len) for p in prompts for _ in range(per_prompt)))
    n, size = len(ids), gan_cfg.image_size
    return {"text": np.stack(ids), "text_valid": np.stack(valid),
            "image": np.zeros((n, size, size, gan_cfg.channels), np.float32),
            "known": np.zeros((n, size, size, 1), np.float32)}


def inpaint_panels(original, known, completed) -> np.ndarray:
    """[3N, H, W, C]: original, masked (holes gray), completed, for each example."""
    masked = original * known + 0.0 * (1.0 - known)
    return np.stack([original, masked, completed], axis=1).reshape((-1,) + original.shape[1:])


def hole_metrics(completed, original, known) -> dict:
    """L1 and PSNR on the hole, and the L1 of filling the hole with each image's mean known colour."""
    hole = 1.0 - known
    values = np.maximum(hole.sum() * original.shape[-1], 1.0)
    l1 = float(np.sum(np.abs(completed - original) * hole) / values)
    mean_color = np.sum(original * known, axis=(1, 2), keepdims=True) / np.maximum(
        np.sum(known, axis=(1, 2), keepdims=True), 1.0)
    fill = original * known + mean_color * hole
    fill_l1 = float(np.sum(np.abs(fill - original) * hole) / values)
    return {"gan/hole_l1": l1, "gan/hole_psnr": hole_psnr(completed, original, known),
            "gan/mean_fill_hole_l1": fill_l1, "gan/hole_l1_ratio": l1 / max(fill_l1, 1e-12)}
