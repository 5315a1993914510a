"""Tokenizers behind one interface (see base.py), and the two ways to get one:

    make_tokenizer("byte" | "sentencepiece:PATH" | "hf:PATH" | SAVED_DIR)   from a config string
    load_tokenizer(SAVED_DIR)                                              what Tokenizer.save wrote
"""

from __future__ import annotations

import json
import os

from sora_jax.data.errors import DataError
from sora_jax.data.tokenizers.base import CONFIG_FILE, SPECIAL_NAMES, Tokenizer
from sora_jax.data.tokenizers.byte import ByteTokenizer
from sora_jax.data.tokenizers.hf import TOKENIZER_FILE, HFTokenizer
from sora_jax.data.tokenizers.sentencepiece_tokenizer import MODEL_FILE, SentencePieceTokenizer, train_sentencepiece

__all__ = [
    "CONFIG_FILE", "SPECIAL_NAMES", "Tokenizer", "ByteTokenizer", "SentencePieceTokenizer", "HFTokenizer",
    "train_sentencepiece", "load_tokenizer", "make_tokenizer",
]

SPEC_HELP = "expected 'byte', 'sentencepiece:PATH', 'hf:PATH' or a directory written by Tokenizer.save"


def _saved_config(directory: str) -> dict | None:
    """Our tokenizer_config.json, or None. A Hugging Face model folder may hold a transformers
    file of the same name; it has no "kind", so it is not mistaken for ours."""
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f"unreadable tokenizer config: {e}", file=path) from e
    return config if isinstance(config, dict) and "kind" in config else None


def load_tokenizer(directory: str) -> Tokenizer:
    """Rebuild the tokenizer that Tokenizer.save(directory) wrote, with the same ids."""
    config = _saved_config(directory)
    if config is None:
        raise DataError(f"no {CONFIG_FILE} written by Tokenizer.save", file=directory)
    kind = config["kind"]
    if kind == "byte":
        tokenizer: Tokenizer = ByteTokenizer()
    elif kind == "sentencepiece":
        tokenizer = SentencePieceTokenizer(os.path.join(directory, config.get("model_file", MODEL_FILE)))
    elif kind == "hf":
        tokenizer = HFTokenizer(os.path.join(directory, config.get("tokenizer_file", TOKENIZER_FILE)),
                                **config.get("special_tokens", {}))
    else:
        raise DataError(f"unknown tokenizer kind {kind!r}", file=os.path.join(directory, CONFIG_FILE))
    # A run's checkpoints hold ids; refuse a tokenizer that would silently read them differently.
    saved = {"vocab_size": config.get("vocab_size"), "special_ids": config.get("special_ids")}
    loaded = {"vocab_size": tokenizer.vocab_size, "special_ids": tokenizer.special_ids}
    if any(saved[key] is not None and saved[key] != loaded[key] for key in saved):
        raise DataError(f"tokenizer files disagree with the saved config: saved {saved}, loaded {loaded}",
                        file=os.path.join(directory, CONFIG_FILE))
    return tokenizer


def _load_kind(kind: str, path: str, file_in_directory: str, build) -> Tokenizer:
    """PATH is the tokenizer file itself, a folder holding it, or a folder Tokenizer.save wrote."""
    if os.path.isdir(path):
        config = _saved_config(path)
        if config is not None:
            if config["kind"] != kind:
                raise DataError(f"holds a {config['kind']!r} tokenizer, not {kind!r}", file=path)
            return load_tokenizer(path)
        path = os.path.join(path, file_in_directory)
    if not os.path.isfile(path):
        raise DataError(f"no such {kind} tokenizer file", file=path or "<empty path>")
    return build(path)


def make_tokenizer(spec: str) -> Tokenizer:
    """A tokenizer from a config string; raises DataError naming the spec or path if unusable."""
    if spec == "byte":
        return ByteTokenizer()
    kind, colon, path = spec.partition(":")
    if colon and kind == "sentencepiece":
        return _load_kind(kind, path, MODEL_FILE, SentencePieceTokenizer)
    if colon and kind == "hf":
        return _load_kind(kind, path, TOKENIZER_FILE, HFTokenizer)
    if os.path.isdir(spec) and _saved_config(spec) is not None:
        return load_tokenizer(spec)
    raise DataError(f"unknown tokenizer spec {spec!r}; {SPEC_HELP}")
