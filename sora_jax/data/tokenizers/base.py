"""The one interface every tokenizer offers (byte-level, SentencePiece, Hugging Face tokenizer.json).

    tok.encode("text") -> list[int]          no special tokens added
    tok.decode(ids) -> str                   special tokens (pad/bos/eos/sep) are dropped
    tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id, tok.sep_id, tok.vocab_size
    tok.save(directory)                       writes tokenizer files + tokenizer_config.json
    load_tokenizer(directory)                 (in tokenizers/__init__.py) reads any of them back
"""

from __future__ import annotations

import abc
import json
import os

CONFIG_FILE = "tokenizer_config.json"
SPECIAL_NAMES = ("pad", "bos", "eos", "unk", "sep")


def as_id_list(ids) -> list[int]:
    """Plain Python ints from a list, tuple, numpy or jax array (decode is fed model outputs)."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    return [int(i) for i in ids]


class Tokenizer(abc.ABC):
    kind: str  # "byte", "sentencepiece" or "hf"

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int: ...

    # Subclasses fill _special_ids with one id per name in SPECIAL_NAMES.
    _special_ids: dict[str, int]

    @property
    def pad_id(self) -> int:
        return self._special_ids["pad"]

    @property
    def bos_id(self) -> int:
        return self._special_ids["bos"]

    @property
    def eos_id(self) -> int:
        return self._special_ids["eos"]

    @property
    def unk_id(self) -> int:
        return self._special_ids["unk"]

    @property
    def sep_id(self) -> int:
        return self._special_ids["sep"]

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abc.abstractmethod
    def decode(self, ids) -> str: ...

    @abc.abstractmethod
    def _save_files(self, directory: str) -> dict:
        """Write the tokenizer's own files into `directory`; return extra config entries."""

    @property
    def special_ids(self) -> dict[str, int]:
        return {"pad": self.pad_id, "bos": self.bos_id, "eos": self.eos_id, "unk": self.unk_id, "sep": self.sep_id}

    @property
    def dropped_on_decode(self) -> frozenset[int]:
        """Ids decode() leaves out: structural markers, not text. unk stays (it stands for lost text)."""
        return frozenset((self.pad_id, self.bos_id, self.eos_id, self.sep_id))

    def save(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        config = {"kind": self.kind, "vocab_size": self.vocab_size, "special_ids": self.special_ids}
        config.update(self._save_files(directory))
        with open(os.path.join(directory, CONFIG_FILE), "w") as f:
            json.dump(config, f, indent=2)
