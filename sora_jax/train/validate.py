"""Checks that the parts of a config fit together, before anything is built: each problem is a
ConfigurationError naming the key."""

from __future__ import annotations

from sora_jax.data.loader import components_config
from sora_jax.data.schema import TASKS
from sora_jax.train.errors import ConfigurationError
from sora_jax.train.partitioning import check_divisible

_TRAIN_POSITIVE = ("num_steps", "log_every", "checkpoint_every", "microbatches")


# (section, key, lowest allowed value, what the bound means) for numbers that have no other check
_RANGES = (("train", "keep_checkpoints", 0, "0: keep all"), ("train", "keep_every", 0, "0: none"),
           ("train", "z_loss", 0, ""), ("train", "peak_tflops", 0, "0: not reported"),
           ("data", "batch_size", 1, ""), ("data", "eval_batch_size", 1, ""),
           ("optim", "learning_rate", 0, ""), ("optim", "warmup_steps", 0, ""), ("optim", "weight_decay", 0, ""),
           ("optim", "clip_norm", 0, "0: off"))


def check_values(config):
    """Numbers and choices that are wrong on their own, whatever else the config says: checked
    first, before anything is built or written."""
    from sora_jax.train.step import NONFINITE_POLICIES
    for key in _TRAIN_POSITIVE:
        if not config.train[key] > 0:
            raise ConfigurationError(f"config key train.{key}: must be positive, got {config.train[key]}")
    for section, key, lowest, meaning in _RANGES:
        if section in config and key in config[section] and not config[section][key] >= lowest:
            bound = f"must be >= {lowest}" + (f" ({meaning})" if meaning else "")
            raise ConfigurationError(f"config key {section}.{key}: {bound}, got {config[section][key]}")
    t = config.train
    if t.nonfinite not in NONFINITE_POLICIES:
        raise ConfigurationError(f"config key train.nonfinite: must be one of {NONFINITE_POLICIES}, got {t.nonfinite!r}")
    negative = {task: w for task, w in t.task_weights.items() if not w >= 0}
    if negative:
        raise ConfigurationError(f"config key train.task_weights: weights must be >= 0, got {negative}")
    if any(int(s) < 1 for s in t.debug_nan_steps):
        raise ConfigurationError(f"config key train.debug_nan_steps: steps are 1-based, got {tuple(t.debug_nan_steps)}")
    if not 0 <= config.optim.get("end_lr_fraction", 0) <= 1:
        raise ConfigurationError(f"config key optim.end_lr_fraction: must be in [0, 1], got {config.optim.end_lr_fraction}")


def check_config(config, model_cfg, tokenizer, mesh, rules):
    t = config.train  # (check_values has run first)
    if t.eval_every < 0 or t.eval_batches < 0:
        raise ConfigurationError("config key train.eval_every / train.eval_batches: must be >= 0")
    if t.get("eval_generate_batches", 0) < -1:
        raise ConfigurationError(f"config key train.eval_generate_batches: must be >= -1 (-1: every eval batch), "
                                 f"got {t.eval_generate_batches}")
    unknown = set(t.task_weights) - set(TASKS)
    if unknown:
        raise ConfigurationError(f"config key train.task_weights: unknown tasks {sorted(unknown)}")
    d = config.data
    if d.batch_size % t.microbatches:
        raise ConfigurationError(f"config key train.microbatches: {t.microbatches} does not divide "
                                 f"data.batch_size {d.batch_size}")
    if config.parallel.backend == "jit":
        check_divisible(d.batch_size // t.microbatches, mesh, rules, key="data.batch_size / train.microbatches")
    vocab = tokenizer.vocab_size
    if d.text_len:
        _fits(vocab, model_cfg.text_encoder.vocab_size, "model.text_encoder.vocab_size", "tokenizer vocabulary")
        _fits(d.text_len, model_cfg.text_encoder.max_len, "model.text_encoder.max_len", "data.text_len", learned=
              model_cfg.text_encoder.position == "learned")
    if d.decoder_len:
        _fits(vocab, model_cfg.decoder.vocab_size, "model.decoder.vocab_size", "tokenizer vocabulary")
        _fits(d.decoder_len, model_cfg.decoder.max_len, "model.decoder.max_len", "data.decoder_len",
              learned=model_cfg.decoder.position == "learned")
    if d.image_size and d.image_size != model_cfg.image_encoder.image_size:
        raise ConfigurationError(f"config key data.image_size: {d.image_size} differs from "
                                 f"model.image_encoder.image_size {model_cfg.image_encoder.image_size}")
    tasks = {entry["task"] for entry in components_config(d).values()}
    if "classify" in tasks and not model_cfg.num_classes:
        raise ConfigurationError("config key model.num_classes: the data has a classify task but the model "
                                 "has no classifier (num_classes = 0)")


def _fits(need, have, key, what, learned=True):
    if need > have and learned:
        raise ConfigurationError(f"config key {key}: {have} is smaller than the {what} ({need})")
