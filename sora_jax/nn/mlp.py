"""Transformer feed-forward blocks: GELU (exact or tanh), ReLU, and SwiGLU."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sora_jax.nn.activations import gelu_exact
from sora_jax.nn.linear import dense

ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "swiglu")


def _activation(name):
    return {"gelu": gelu_exact,
            "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
            "relu": jax.nn.relu}[name]


class MLP(nn.Module):
    """x -> act(x W_in) W_out, or SwiGLU: (silu(x W_gate) * x W_up) W_out."""

    hidden_dim: int
    activation: str = "gelu"
    dropout_rate: float = 0.0
    use_bias: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_BxTxD, deterministic: bool = True):
        d_model = x_BxTxD.shape[-1]
        kw = dict(use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype)
        if self.activation == "swiglu":
            gate = dense(self.hidden_dim, ("embed", "mlp"), name="wi_gate", **kw)(x_BxTxD)
            up = dense(self.hidden_dim, ("embed", "mlp"), name="wi_up", **kw)(x_BxTxD)
            h = jax.nn.silu(gate) * up
        elif self.activation in ACTIVATIONS:
            h = _activation(self.activation)(dense(self.hidden_dim, ("embed", "mlp"), name="wi", **kw)(x_BxTxD))
        else:
            raise ValueError(f"unknown activation {self.activation!r}; choose one of {ACTIVATIONS}")
        h = nn.with_logical_constraint(h, ("activation_batch", "activation_length", "activation_mlp"))
        h = nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
        return dense(d_model, ("mlp", "embed"), name="wo", **kw)(h)
