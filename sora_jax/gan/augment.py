"""DiffAugment (Zhao et al. 2020): differentiable translation, cutout and colour changes applied
with the same policy to real and generated images, so the discriminator cannot tell them apart
by the augmentation and gradients still reach the generator."""

from __future__ import annotations

import jax
import jax.numpy as jnp

POLICIES = ("color", "translation", "cutout")


def _color(x, key):
    k1, k2, k3 = jax.random.split(key, 3)
    B = x.shape[0]
    x = x + (jax.random.uniform(k1, (B, 1, 1, 1)) - 0.5)  # brightness
    mean = jnp.mean(x, axis=-1, keepdims=True)
    x = (x - mean) * (jax.random.uniform(k2, (B, 1, 1, 1)) * 2.0) + mean  # saturation
    mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    return (x - mean) * (jax.random.uniform(k3, (B, 1, 1, 1)) + 0.5) + mean  # contrast


def _translation(x, key, ratio=0.125):
    B, H, W, _ = x.shape
    kx, ky = jax.random.split(key)
    dy = jax.random.randint(ky, (B,), -int(H * ratio), int(H * ratio) + 1)
    dx = jax.random.randint(kx, (B,), -int(W * ratio), int(W * ratio) + 1)

    def shift(img, sy, sx):  # zero padding where the image moved away
        rows, cols = jnp.arange(H) - sy, jnp.arange(W) - sx
        inside = ((rows >= 0) & (rows < H))[:, None] & ((cols >= 0) & (cols < W))[None, :]
        moved = img[jnp.clip(rows, 0, H - 1)][:, jnp.clip(cols, 0, W - 1)]
        return jnp.where(inside[..., None], moved, 0.0)
    return jax.vmap(shift)(x, dy, dx)


def _cutout(x, key, ratio=0.5):
    B, H, W, _ = x.shape
    ch, cw = int(H * ratio), int(W * ratio)
    ky, kx = jax.random.split(key)
    cy = jax.random.randint(ky, (B, 1, 1), 0, H + (1 - ch % 2))
    cx = jax.random.randint(kx, (B, 1, 1), 0, W + (1 - cw % 2))
    rows, cols = jnp.arange(H)[None, :, None], jnp.arange(W)[None, None, :]
    hole = (jnp.abs(rows - cy) < ch // 2 + ch % 2) & (jnp.abs(cols - cx) < cw // 2 + cw % 2)
    return jnp.where(hole[..., None], 0.0, x)


def diff_augment(x_BxHxWxC, key, policy: str):
    """policy: comma-separated names from POLICIES ("" for none)."""
    names = [p for p in policy.split(",") if p]
    for name, k in zip(names, jax.random.split(key, max(len(names), 1))):
        if name not in POLICIES:
            raise ValueError(f"unknown DiffAugment policy {name!r}; choose from {POLICIES}")
        x_BxHxWxC = {"color": _color, "translation": _translation, "cutout": _cutout}[name](x_BxHxWxC, k)
    return x_BxHxWxC
