"""Pooling of token states into one vector, ignoring padding."""

import jax.numpy as jnp


def masked_mean(x_BxTxD, valid_BxT):
    """Mean over the valid tokens (zeros if a row has none)."""
    weights = valid_BxT.astype(jnp.float32)[:, :, None]
    total = jnp.sum(x_BxTxD.astype(jnp.float32) * weights, axis=1)
    count = jnp.maximum(jnp.sum(weights, axis=1), 1.0)
    return (total / count).astype(x_BxTxD.dtype)
