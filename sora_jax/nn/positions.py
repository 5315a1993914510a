"""Positional encodings: sinusoidal, learned absolute, rotary (RoPE), and 2-D for image grids."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from sora_jax.nn.linear import logical, take_rows

POSITIONS = ("sinusoidal", "learned", "rope", "none")


def sinusoidal(positions, dim: int, max_timescale: float = 10_000.0):
    """The Transformer encoding (Vaswani et al. 2017): PE[p, 2i] = sin(p / 10000^(2i/d)),
    PE[p, 2i+1] = cos(same). positions: any int array; returns positions.shape + (dim,)."""
    if dim % 2:
        raise ValueError(f"sinusoidal positions need an even dimension, got {dim}")
    inv_freq = max_timescale ** (-jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
    angles = positions.astype(jnp.float32)[..., None] * inv_freq.reshape((1,) * positions.ndim + (-1,))
    return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(positions.shape + (dim,))


def sincos_2d(height: int, width: int, dim: int, max_timescale: float = 10_000.0):
    """2-D sinusoidal encoding for an image grid, row-major tokens: [height * width, dim].
    Half the channels encode the row, half the column (as in MAE / ViT-sincos)."""
    if dim % 4:
        raise ValueError(f"2-D sinusoidal positions need a dimension divisible by 4, got {dim}")
    rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
    return jnp.concatenate([sinusoidal(rows.reshape(-1), dim // 2, max_timescale),
                            sinusoidal(cols.reshape(-1), dim // 2, max_timescale)], axis=-1)


def grid_positions(height: int, width: int):
    """(row, col) of each token of a row-major grid: two int arrays of shape [height * width]."""
    rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
    return rows.reshape(-1), cols.reshape(-1)


class LearnedPositions(nn.Module):
    """A learned table [max_len, embed] looked up at the given positions."""

    max_len: int
    features: int
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, positions):
        table = self.param("embedding", logical(nn.initializers.normal(0.02), ("position", "embed")),
                           (self.max_len, self.features), self.param_dtype)
        return take_rows(table, positions, "position")


class Learned2DPositions(nn.Module):
    """Learned row and column tables; a grid token gets row[r] + col[c]."""

    height: int
    width: int
    features: int
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self):
        init = logical(nn.initializers.normal(0.02), ("position", "embed"))
        row = self.param("row", init, (self.height, self.features), self.param_dtype)
        col = self.param("col", init, (self.width, self.features), self.param_dtype)
        r, c = grid_positions(self.height, self.width)
        return take_rows(row, r, "position") + take_rows(col, c, "position")


def apply_rope(x_BxTxNxH, positions_BxT, max_wavelength: float = 10_000.0):
    """Rotary position embedding (Su et al. 2021), rotate-half layout (GPT-NeoX / LLaMA):
    channel i pairs with channel i + H/2. q.k then depends only on the position offset."""
    head_dim = x_BxTxNxH.shape[-1]
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
    half = head_dim // 2
    inv_freq = max_wavelength ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles_BxTx1xHh = positions_BxT.astype(jnp.float32)[:, :, None, None] * inv_freq[None, None, None, :]
    sin, cos = jnp.sin(angles_BxTx1xHh), jnp.cos(angles_BxTx1xHh)
    x = x_BxTxNxH.astype(jnp.float32)
    x1, x2 = x[..., :half], x[..., half:]
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_BxTxNxH.dtype)
