"""LayerNorm and RMSNorm with named scale/bias, statistics always in float32."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from sora_jax.nn.linear import logical

NORMS = ("layernorm", "rmsnorm")


def make_norm(kind: str, *, eps: float = 1e-6, dtype=jnp.float32, param_dtype=jnp.float32,
              axis_name: str = "embed", name=None):
    """kind: "layernorm" (scale and bias) or "rmsnorm" (scale only)."""
    ones = logical(nn.initializers.ones_init(), (axis_name,))
    if kind == "layernorm":
        return nn.LayerNorm(epsilon=eps, dtype=dtype, param_dtype=param_dtype, scale_init=ones,
                            bias_init=logical(nn.initializers.zeros_init(), (axis_name,)),
                            use_fast_variance=False, force_float32_reductions=True, name=name)
    if kind == "rmsnorm":
        return nn.RMSNorm(epsilon=eps, dtype=dtype, param_dtype=param_dtype, scale_init=ones,
                          use_fast_variance=False, force_float32_reductions=True, name=name)
    raise ValueError(f"unknown norm {kind!r}; choose one of {NORMS}")
