"""LayerNorm and RMSNorm with named scale/bias, statistics always in float32 (see norm_ops.py)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from sora_jax.nn.linear import logical
from sora_jax.nn.norm_ops import layer_norm, rms_norm

NORMS = ("layernorm", "rmsnorm")


def whole(vector):
    """A parameter vector gathered whole before use (FSDP shards it over "embed"). Multiplied into
    batch-sharded activations while still sharded, it leads XLA's partitioner to shard the
    product, and the activation gradients with it, by embed: a resharding it can only do by
    replicating them ("Involuntary full rematerialization")."""
    return nn.with_logical_constraint(vector, (None,))


class Norm(nn.Module):
    """Normalizes the last axis; parameters "scale" (and "bias" for layernorm) as flax's norms name
    them, so checkpoints and imported weights map one to one."""

    kind: str = "layernorm"
    epsilon: float = 1e-6
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    axis_name: str = "embed"

    @nn.compact
    def __call__(self, x):
        features = (x.shape[-1],)
        scale = whole(self.param("scale", logical(nn.initializers.ones_init(), (self.axis_name,)), features,
                                 self.param_dtype))
        if self.kind == "layernorm":
            bias = whole(self.param("bias", logical(nn.initializers.zeros_init(), (self.axis_name,)), features,
                                    self.param_dtype))
            return layer_norm(x, scale, bias, self.epsilon).astype(self.dtype)
        return rms_norm(x, scale, self.epsilon).astype(self.dtype)


def make_norm(kind: str, *, eps: float = 1e-6, dtype=jnp.float32, param_dtype=jnp.float32,
              axis_name: str = "embed", name=None):
    """kind: "layernorm" (scale and bias) or "rmsnorm" (scale only)."""
    if kind not in NORMS:
        raise ValueError(f"unknown norm {kind!r}; choose one of {NORMS}")
    return Norm(kind, eps, dtype, param_dtype, axis_name, name=name)
