"""Dense and embedding layers whose parameters carry logical axis names.

Every parameter in sora_jax is created through `nn.with_logical_partitioning`, so the trainer
can map names such as "embed" or "mlp" to mesh axes by rules kept in config.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any
default_kernel_init = nn.initializers.lecun_normal()


def logical(init, names: Sequence[str | None]):
    return nn.with_logical_partitioning(init, tuple(names))


def dense(features, kernel_axes, *, axis=-1, use_bias=True, dtype=jnp.float32,
          param_dtype=jnp.float32, kernel_init=default_kernel_init, name=None):
    """A DenseGeneral whose kernel is named `kernel_axes` (input axes then output axes) and
    whose bias takes the output axes' names."""
    features = (features,) if isinstance(features, int) else tuple(features)
    out_axes = tuple(kernel_axes)[-len(features):]
    return nn.DenseGeneral(
        features=features if len(features) > 1 else features[0],
        axis=axis,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=logical(kernel_init, kernel_axes),
        bias_init=logical(nn.initializers.zeros_init(), out_axes),
        name=name,
    )


class Embed(nn.Module):
    """Token embedding table [vocab, embed]; `attend` gives tied output logits in float32."""

    num_embeddings: int
    features: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    axes: tuple[str, str] = ("vocab", "embed")
    embedding_init: Any = nn.initializers.normal(stddev=0.02)

    def setup(self):
        self.embedding = self.param(
            "embedding", logical(self.embedding_init, self.axes),
            (self.num_embeddings, self.features), self.param_dtype)

    def __call__(self, ids):
        return jnp.take(self.embedding, ids, axis=0).astype(self.dtype)

    def attend(self, x_BxTxD):
        table = jnp.asarray(self.embedding, self.dtype)
        return jnp.einsum("btd,vd->btv", x_BxTxD.astype(self.dtype), table,
                          preferred_element_type=jnp.float32)
