"""English conversations from the `chatterbot-corpus` package as (prompt -> reply) pairs.

Every consecutive pair of turns in a conversation is one record {"prompt", "reply", "topic"}.
Pairs are ordered by file name then position; every 10th pair is validation."""

from __future__ import annotations

import functools
import glob
import importlib.util
import os

import yaml

from sora_jax.data.errors import DataError


@functools.lru_cache(maxsize=1)
def all_pairs() -> tuple:
    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the 'chatterbot-corpus' package is not installed", file="chat")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "data", "english")
    pairs = []
    for path in sorted(glob.glob(os.path.join(folder, "*.yml"))):
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        topic = os.path.splitext(os.path.basename(path))[0]
        for conversation in data.get("conversations", []):
            turns = [str(t).strip() for t in conversation if isinstance(t, (str, int, float)) and str(t).strip()]
            pairs += [(turns[i], turns[i + 1], topic) for i in range(len(turns) - 1)]
    return tuple(pairs)


class ChatSource:
    def __init__(self, split: str):
        if split not in ("train", "validation"):
            raise ValueError(f"chat has splits 'train' and 'validation', not {split!r}")
        pairs = all_pairs()
        keep = (lambda i: i % 10 == 0) if split == "validation" else (lambda i: i % 10 != 0)
        self._pairs = [p for i, p in enumerate(pairs) if keep(i)]
        self._name = f"chat:{split}"

    def __len__(self):
        return len(self._pairs)

    def __getitem__(self, index):
        prompt, reply, topic = self._pairs[index]
        return {"prompt": prompt, "reply": reply, "topic": topic, "_file": self._name, "_record": index}
