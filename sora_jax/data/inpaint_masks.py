"""Seeded inpainting masks: random rectangles and free-form brush strokes (1 = missing pixel)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

MASK_KINDS = ("box", "stroke", "mixed")


def box_mask(rng: np.random.Generator, size: int, min_frac=0.25, max_frac=0.5) -> np.ndarray:
    h = int(rng.integers(int(size * min_frac), int(size * max_frac) + 1))
    w = int(rng.integers(int(size * min_frac), int(size * max_frac) + 1))
    top, left = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
    mask = np.zeros((size, size), np.float32)
    mask[top:top + h, left:left + w] = 1.0
    return mask


def stroke_mask(rng: np.random.Generator, size: int, max_strokes=3, max_vertices=5) -> np.ndarray:
    """Free-form strokes in the style of DeepFill v2: random polylines with a random brush width."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(1, max_strokes + 1))):
        width = int(rng.integers(max(1, size // 16), max(2, size // 6) + 1))
        x, y = rng.uniform(0, size, 2)
        points = [(x, y)]
        for _ in range(int(rng.integers(2, max_vertices + 1))):
            angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(size / 8, size / 3)
            x = float(np.clip(x + length * np.cos(angle), 0, size - 1))
            y = float(np.clip(y + length * np.sin(angle), 0, size - 1))
            points.append((x, y))
        draw.line(points, fill=255, width=width, joint="curve")
        for px, py in points:  # round the joints and ends
            r = width / 2
            draw.ellipse((px - r, py - r, px + r, py + r), fill=255)
    return (np.asarray(canvas) > 0).astype(np.float32)


def make_mask(rng: np.random.Generator, size: int, kind: str = "mixed") -> np.ndarray:
    """[size, size, 1] float32 mask; "mixed" picks box or stroke with equal probability."""
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask kind {kind!r}; choose one of {', '.join(MASK_KINDS)}")
    if kind == "mixed":
        kind = "box" if rng.random() < 0.5 else "stroke"
    mask = box_mask(rng, size) if kind == "box" else stroke_mask(rng, size)
    return mask[:, :, None]
