"""optax optimizers by name, learning-rate schedules, clipping and weight-decay masks."""

from __future__ import annotations

import jax
import optax

from sora_jax.train.errors import ConfigurationError

SCHEDULES = ("cosine", "linear", "constant")
OPTIMIZERS = ("adamw", "adam", "lion", "sgd", "adafactor")
_NO_DECAY = ("bias", "scale", "attention_gate", "mlp_gate")  # norms, biases, gates


def learning_rate_schedule(o, num_steps: int):
    """Linear warm-up from 0 over optim.warmup_steps, then cosine / linear decay to
    learning_rate * optim.end_lr_fraction at num_steps, or constant."""
    if o.schedule not in SCHEDULES:
        raise ConfigurationError(f"config key optim.schedule: {o.schedule!r} is not one of {', '.join(SCHEDULES)}")
    peak, warmup = o.learning_rate, min(o.warmup_steps, max(num_steps - 1, 0))
    decay_steps = max(num_steps - warmup, 1)
    end = peak * o.end_lr_fraction
    if o.schedule == "cosine":
        decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=o.end_lr_fraction)
    elif o.schedule == "linear":
        decay = optax.linear_schedule(peak, end, decay_steps)
    else:
        decay = optax.constant_schedule(peak)
    if warmup <= 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def decay_mask(params):
    """True for weights that get weight decay: kernels and embeddings, not biases, norm scales or gates."""
    def decays(path, _):
        # The last dict key names the parameter (boxed parameters add a trailing ".value").
        names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
        return not names or names[-1] not in _NO_DECAY
    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(o, num_steps: int) -> optax.GradientTransformation:
    if o.name not in OPTIMIZERS:
        raise ConfigurationError(f"config key optim.name: {o.name!r} is not one of {', '.join(OPTIMIZERS)}")
    schedule = learning_rate_schedule(o, num_steps)
    if o.name == "adamw":
        core = optax.adamw(schedule, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay, mask=decay_mask)
    elif o.name == "adam":
        core = optax.adam(schedule, b1=o.b1, b2=o.b2, eps=o.eps)
    elif o.name == "lion":
        core = optax.lion(schedule, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay, mask=decay_mask)
    elif o.name == "sgd":
        core = optax.sgd(schedule, momentum=o.b1 or None)
    else:
        core = optax.adafactor(schedule, weight_decay_rate=o.weight_decay or None, weight_decay_mask=decay_mask)
    parts = [optax.clip_by_global_norm(o.clip_norm)] if o.clip_norm > 0 else []
    return optax.chain(*parts, core)
