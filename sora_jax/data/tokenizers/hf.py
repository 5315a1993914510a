"""A Hugging Face `tokenizer.json` (e.g. the one shipped with imported BERT-family weights)."""

from __future__ import annotations

import json
import os

import tokenizers

from sora_jax.data.errors import DataError
from sora_jax.data.tokenizers.base import SPECIAL_NAMES, Tokenizer, as_id_list

TOKENIZER_FILE = "tokenizer.json"
GPT2_END = "<|endoftext|>"

# Token strings tried in order for each special. BERT names come first, then
# RoBERTa/SentencePiece-style ones; GPT-2's single <|endoftext|> is the last resort for all five,
# as in GPT-2 itself (a byte-level BPE never needs an unk, so GPT-2 has none of its own).
_CANDIDATES = {
    "pad": ("[PAD]", "<pad>", "<|pad|>", GPT2_END),
    "bos": ("[CLS]", "<s>", "<bos>", "<|startoftext|>", "<|begin_of_text|>", GPT2_END),
    "eos": ("[SEP]", "</s>", "<eos>", "<|end_of_text|>", GPT2_END),
    "unk": ("[UNK]", "<unk>", "<|unk|>", GPT2_END),
    "sep": ("[SEP]", "<sep>", "</s>", GPT2_END),
}


def _model_unk_token(tokenizer: tokenizers.Tokenizer) -> str | None:
    """The unk token the model itself declares, which beats guessing by name."""
    model = json.loads(tokenizer.to_str()).get("model", {})
    if model.get("unk_token"):  # BPE, WordPiece, WordLevel
        return model["unk_token"]
    if isinstance(model.get("unk_id"), int):  # Unigram stores an index into its vocab
        return tokenizer.id_to_token(model["unk_id"])
    return None


class HFTokenizer(Tokenizer):
    """Wraps `tokenizers.Tokenizer.from_file(path)`; special tokens are found by name.

    Overrides name a special's token string, e.g. HFTokenizer(path, bos="<s>", pad="<pad>").
    encode adds no special tokens and treats special-token strings in the text (e.g. a literal
    "[SEP]") as ordinary text, so raw data cannot inject control ids. decode skips every token
    the file marks special, which for BERT-style files includes [UNK] and [MASK].
    Round trips are exact only as far as the tokenizer.json allows: byte-level BPE (GPT-2 style)
    is exact; BERT WordPiece lowercases, strips accents, normalizes spaces and turns characters
    outside its vocabulary into [UNK].
    """

    kind = "hf"

    def __init__(self, path: str, **special_overrides: str):
        self.path = path
        unknown = set(special_overrides) - set(SPECIAL_NAMES)
        if unknown:
            raise TypeError(f"unknown special token names {sorted(unknown)}; expected some of {SPECIAL_NAMES}")
        try:
            with open(path, "rb") as f:
                # Kept in memory so save() writes exactly the file that was loaded.
                self._file_bytes = f.read()
            self._tokenizer = tokenizers.Tokenizer.from_str(self._file_bytes.decode("utf-8"))
        except Exception as e:  # OSError, bad UTF-8, or the Rust parser's plain Exception
            raise DataError(f"cannot load Hugging Face tokenizer: {e}", file=path) from e
        self._tokenizer.encode_special_tokens = True
        # A file may pad or truncate every encoding to a fixed length (MiniLM's pads to 128); the
        # pipeline does both itself, per task, so encode returns exactly the text's tokens.
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self._vocab = self._tokenizer.get_vocab(with_added_tokens=True)
        # Not get_vocab_size(): added tokens may leave gaps, and every id must fit an embedding row.
        self._vocab_size = max(self._vocab.values(), default=-1) + 1
        self.special_tokens = self._find_special_tokens(special_overrides)
        self._special_ids = {name: self._vocab[token] for name, token in self.special_tokens.items()}

    def _find_special_tokens(self, overrides: dict[str, str]) -> dict[str, str]:
        found = {}
        for name in SPECIAL_NAMES:
            if name in overrides:
                candidates = (overrides[name],)
            elif name == "unk":
                candidates = (_model_unk_token(self._tokenizer),) + _CANDIDATES["unk"]
            else:
                candidates = _CANDIDATES[name]
            token = next((t for t in candidates if t is not None and t in self._vocab), None)
            if token is None:
                tried = ", ".join(repr(t) for t in candidates if t is not None)
                raise DataError(f"cannot determine the {name!r} special token (none of {tried} is in the "
                                f"vocabulary); pass {name}=TOKEN to choose one", file=self.path)
            found[name] = token
        return found

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def vocabulary(self) -> dict[str, int]:
        """token string -> id, added tokens included (what pretrained embeddings are indexed by)."""
        return dict(self._vocab)

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        # Our specials are dropped even if the file does not mark them special (e.g. an override);
        # ids outside the vocabulary (a sampled model output) are skipped instead of raising.
        dropped, size = self.dropped_on_decode, self.vocab_size
        kept = [i for i in as_id_list(ids) if i not in dropped and 0 <= i < size]
        return self._tokenizer.decode(kept, skip_special_tokens=True)

    def _save_files(self, directory: str) -> dict:
        with open(os.path.join(directory, TOKENIZER_FILE), "wb") as f:
            f.write(self._file_bytes)
        # Token strings, not ids: load passes them back as overrides, so detection cannot drift.
        return {"tokenizer_file": TOKENIZER_FILE, "special_tokens": dict(self.special_tokens)}
