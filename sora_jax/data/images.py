"""Image decoding and transforms (Pillow + numpy): decode, resize, centre/random crop,
horizontal flip, normalise to float32 [-1, 1] NHWC."""

from __future__ import annotations

import dataclasses
import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from sora_jax.data.errors import DataError


def resolve_image_path(path: str, record_file: str | None) -> str:
    """An image path in a record is relative to the file the record came from."""
    if os.path.isabs(path) or not record_file or not os.path.exists(record_file):
        return path
    return os.path.join(os.path.dirname(os.path.abspath(record_file)), path)


def decode_image(value, *, file=None, record=None, field="image") -> Image.Image:
    """bytes (PNG/JPEG/...), a path (relative to `file`), or a uint8 array [H, W], [H, W, 1|3|4]
    -> RGB PIL image."""
    try:
        if isinstance(value, (bytes, bytearray)):
            image = Image.open(io.BytesIO(value))
            image.load()
        elif isinstance(value, str):
            image = Image.open(resolve_image_path(value, file))
            image.load()
        elif isinstance(value, np.ndarray):
            array = value
            if array.dtype != np.uint8:
                raise DataError(f"image arrays must be uint8, got {array.dtype}", file=file, record=record, field=field)
            if array.ndim == 3 and array.shape[-1] == 1:
                array = array[..., 0]
            image = Image.fromarray(array)
        else:
            raise DataError(f"expected image bytes, a path or a uint8 array, got {type(value).__name__}",
                            file=file, record=record, field=field)
    except (UnidentifiedImageError, OSError, ValueError, TypeError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"undecodable image ({type(e).__name__}: {e})", file=file, record=record, field=field) from None
    return image.convert("RGB")


@dataclasses.dataclass(frozen=True)
class ImageTransform:
    """Resize the shorter side, crop a square (random in training, centre otherwise), optionally
    flip, and map uint8 [0, 255] to float32 [-1, 1]."""

    size: int
    channels: int = 3
    random_crop: bool = False
    flip: bool = False
    crop_scale: float = 1.0  # resize the shorter side to size * crop_scale before cropping

    def __call__(self, image: Image.Image, rng: np.random.Generator | None = None) -> np.ndarray:
        target = max(self.size, int(round(self.size * self.crop_scale)))
        w, h = image.size
        scale = target / min(w, h)
        new_w, new_h = max(target, round(w * scale)), max(target, round(h * scale))
        if (new_w, new_h) != (w, h):
            image = image.resize((new_w, new_h), Image.BILINEAR)
        if self.random_crop and rng is not None:
            left, top = int(rng.integers(0, new_w - self.size + 1)), int(rng.integers(0, new_h - self.size + 1))
        else:
            left, top = (new_w - self.size) // 2, (new_h - self.size) // 2
        image = image.crop((left, top, left + self.size, top + self.size))
        array = np.asarray(image, np.float32)
        if self.flip and rng is not None and rng.random() < 0.5:
            array = array[:, ::-1]
        if self.channels == 1:
            array = array.mean(axis=-1, keepdims=True)
        return np.ascontiguousarray(array / 127.5 - 1.0, dtype=np.float32)


def to_uint8(image_HxWxC: np.ndarray) -> np.ndarray:
    """Inverse of the normalisation: float [-1, 1] -> uint8 [0, 255] (for saving samples)."""
    return np.clip(np.round((np.asarray(image_HxWxC) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def is_image_file(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
