"""Images in [-1, 1] -> uint8 pixels, grids of them, and PNG files (Pillow)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def to_uint8(images) -> np.ndarray:
    """[..., H, W, C] floats in [-1, 1] -> uint8 in 0..255 (gray images get three channels)."""
    x = np.asarray(images, np.float32)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def grid(images, columns: int, *, pad: int = 1, scale: int = 1) -> np.ndarray:
    """[N, H, W, C] in [-1, 1] -> one uint8 [rows * (H + pad) + pad, ...] image, row-major, with a
    dark gutter; each pixel repeated scale x scale times (small images stay legible)."""
    pixels = to_uint8(images)
    if scale > 1:
        pixels = pixels.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, c = pixels.shape
    rows = -(-n // columns)
    out = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 40, np.uint8)
    for i in range(n):
        r, k = divmod(i, columns)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + k * (w + pad):pad + k * (w + pad) + w] = pixels[i]
    return out


def save_png(pixels_HxWxC: np.ndarray, path: str):
    """Written to a temporary name and renamed, so a reader never sees half a file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temp = path + ".tmp"
    try:
        Image.fromarray(pixels_HxWxC).save(temp, format="PNG")
        os.replace(temp, path)
    except BaseException:
        if os.path.isfile(temp):  # no stray half file when the write or the rename fails
            os.remove(temp)
        raise


def load_image(path: str, size: int, channels: int = 3) -> np.ndarray:
    """A PNG/JPEG file -> [size, size, channels] float32 in [-1, 1] (resized with bilinear filtering)."""
    with Image.open(path) as image:
        image = image.convert("RGB" if channels == 3 else "L")
        if image.size != (size, size):
            image = image.resize((size, size), Image.BILINEAR)
        x = np.asarray(image, np.float32)
    if x.ndim == 2:
        x = x[..., None]
    return x / 127.5 - 1.0
