"""`digits`: scikit-learn's `load_digits()` (1,797 real 8x8 handwritten digits, bundled with
scikit-learn, so nothing is downloaded) as captioned RGB images.

    source = DigitsSource("validation", image_size=32)
    len(source)   -> 180
    source[0]     -> {"image": uint8 [32, 32, 3], "caption": "a handwritten zero", "label": 0,
                      "label_name": "zero", "qa": [["what digit is this?", "zero"]],
                      "source_index": 0, "_file": "digits:validation", "_record": 0}

The split is fixed: validation is every tenth image (dataset index % 10 == 0), train the rest.
"""

from __future__ import annotations

import functools
import operator

import numpy as np
from PIL import Image

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLITS = ("train", "validation")
VALIDATION_EVERY = 10
MAX_PIXEL = 16  # load_digits() pixel values are counts 0..16


def label_names() -> tuple[str, ...]:
    return NUMBER_WORDS


@functools.lru_cache(maxsize=None)
def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [1797, 8, 8] in 0..255, labels int64 [1797]), loaded once per process."""
    from sklearn.datasets import load_digits  # imported lazily: scikit-learn is slow to import

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / MAX_PIXEL)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    # The cache is shared by every source in the process: nobody may modify it.
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def split_indices(split: str) -> np.ndarray:
    """Dataset indices (into load_digits()) that make up `split`, in increasing order."""
    if split not in SPLITS:
        raise ValueError(f"digits: unknown split {split!r}; expected one of {list(SPLITS)}")
    everything = np.arange(len(load_digit_images()[1]))
    is_validation = everything % VALIDATION_EVERY == 0
    return everything[is_validation if split == "validation" else ~is_validation]


class DigitsSource:
    """Random-access source of `digits` records (grain style: len() and [index])."""

    def __init__(self, split: str = "train", *, image_size: int = 32):
        if image_size < 8:
            raise ValueError(f"digits: image_size must be at least 8, got {image_size}")
        self.split, self.image_size = split, image_size
        self.indices = split_indices(split)
        self.label_names = NUMBER_WORDS

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index) -> dict:
        index = operator.index(index)
        if not 0 <= index < len(self.indices):
            raise IndexError(f"digits:{self.split}: index {index} out of range [0, {len(self.indices)})")
        source_index = int(self.indices[index])
        images, labels = load_digit_images()
        label = int(labels[source_index])
        word = NUMBER_WORDS[label]
        return {
            "image": upsample(images[source_index], self.image_size),
            "caption": f"a handwritten {word}",
            "qa": [["what digit is this?", word]],
            "label": label,
            "label_name": word,
            "source_index": source_index,
            "_file": f"digits:{self.split}",
            "_record": index,
        }

    def __repr__(self) -> str:
        return f"DigitsSource(split={self.split!r}, image_size={self.image_size})"


def upsample(grey: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 [8, 8] -> uint8 [S, S, 3]: bilinear resize, grey copied to the three channels."""
    resized = Image.fromarray(grey).resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.repeat(np.asarray(resized, dtype=np.uint8)[:, :, None], 3, axis=2)
