"""Small builders shared by the model tests."""

import dataclasses
import functools

import flax.linen as nn
import jax

from sora_jax.models import SoraModel
from tests.batches import make_batch


def replace(cfg, **parts):
    """dataclasses.replace on nested parts: replace(cfg, decoder=dict(num_layers=3), num_classes=2)."""
    updates = {}
    for name, value in parts.items():
        updates[name] = dataclasses.replace(getattr(cfg, name), **value) if isinstance(value, dict) else value
    return dataclasses.replace(cfg, **updates).validate()


def all_parts(cfg, **parts):
    """The config with the same settings on every Transformer part."""
    return replace(cfg, text_encoder=dict(parts), fusion=dict(parts), decoder=dict(parts))


def init_params(cfg, batch=None, seed=0):
    """(model, plain params) for `cfg`, initialised once per config and reused (init compiles slowly)."""
    del batch  # params depend only on the config; the default batch has the right shapes
    return SoraModel(cfg), _init_cached(cfg, seed)


@functools.lru_cache(maxsize=None)
def _init_cached(cfg, seed):
    batch = make_batch(cfg)
    variables = jax.jit(SoraModel(cfg).init)(jax.random.key(seed), batch["text"], batch["text_valid"],
                                             batch["images"], batch["dec"])
    return nn.meta.unbox(variables["params"])


def encode(model, params, batch, **kwargs):
    """SoraModel.encode under jit (eager Flax calls are slow to dispatch on CPU)."""
    return jax.jit(lambda p: model.apply({"params": p}, batch["text"], batch["text_valid"], batch["images"],
                                         method=SoraModel.encode, **kwargs))(params)
