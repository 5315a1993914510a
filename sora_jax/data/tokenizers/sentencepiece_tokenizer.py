"""SentencePiece: train a model on a corpus, load a .model file, and save it next to the data."""

from __future__ import annotations

import io
import os
from typing import Iterable, Iterator

import sentencepiece as spm

from sora_jax.data.errors import DataError
from sora_jax.data.tokenizers.base import Tokenizer, as_id_list

MODEL_FILE = "spm.model"
SEP_PIECE = "<sep>"
TRAINING_SEED = 0

# Ids fixed by training so every model this project trains agrees with ByteTokenizer's layout.
_TRAINER_SETTINGS = dict(
    pad_id=0, bos_id=1, eos_id=2, unk_id=3,
    # A control symbol (not a user-defined one) so that the literal text "<sep>" in the data is
    # tokenized as ordinary characters instead of silently becoming the separator id 4.
    control_symbols=[SEP_PIECE],
    # Keep the text exactly as given: no NFKC, no whitespace squeezing, so decode(encode(t)) == t.
    normalization_rule_name="identity",
    remove_extra_whitespaces=False,
    # No implicit leading space: decode(encode(a) + encode(b)) == a + b, which packed and
    # concatenated sequences rely on (as in GPT-2, a text-initial word gets its own pieces).
    add_dummy_prefix=False,
    # Characters unseen in training become UTF-8 byte pieces instead of <unk>.
    byte_fallback=True,
    character_coverage=1.0,
    # Single-threaded with a fixed seed: the same corpus always gives the same model bytes.
    num_threads=1,
    # Tiny corpora may not have enough pieces to reach vocab_size; train a smaller vocabulary.
    hard_vocab_limit=False,
    max_sentence_length=1 << 16,  # bytes; longer lines would be skipped silently (default 4192)
    minloglevel=2,  # errors only: training is otherwise chatty on stderr
)


def _lines(texts: Iterable[str]) -> Iterator[str]:
    """Lines are SentencePiece's training unit; whole documents would be over its length limit."""
    for text in texts:
        for line in text.split("\n"):
            if line:
                yield line


def train_sentencepiece(texts: Iterable[str], vocab_size: int, directory: str,
                        model_type: str = "unigram") -> "SentencePieceTokenizer":
    """Train on `texts` in memory, write `directory/spm.model`, and return the loaded tokenizer.

    vocab_size is an upper bound (a tiny corpus gives fewer pieces); it must leave room for the
    5 specials, the 256 byte pieces and every distinct character of the corpus.
    """
    model_path = os.path.join(directory, MODEL_FILE)
    model = io.BytesIO()
    spm.set_random_generator_seed(TRAINING_SEED)
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=_lines(texts), model_writer=model,
                                       vocab_size=vocab_size, model_type=model_type, **_TRAINER_SETTINGS)
    except RuntimeError as e:  # sentencepiece reports bad settings/corpora as RuntimeError
        raise DataError(f"SentencePiece training failed (vocab_size={vocab_size}, model_type={model_type!r}): {e}",
                        file=model_path) from e
    os.makedirs(directory, exist_ok=True)
    with open(model_path, "wb") as f:
        f.write(model.getvalue())
    tokenizer = SentencePieceTokenizer(model_path)
    tokenizer.save(directory)  # with its tokenizer_config.json: the directory loads with load_tokenizer
    return tokenizer


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece .model file. encode adds no bos/eos; decode drops pad/bos/eos/sep.

    With the settings of train_sentencepiece, decode(encode(t)) == t for ordinary text:
    non-ASCII (unseen characters fall back to bytes), tabs, newlines, leading, trailing and
    repeated spaces. The one exception: the character U+2581 '▁' is SentencePiece's own marker
    for a space, so a literal '▁' in the text decodes as ' '.
    Decoding concatenated encodings gives the concatenated texts (no space is inserted between
    them) for models trained here; a foreign model trained with add_dummy_prefix adds one.
    Ids outside the vocabulary decode as unk, which SentencePiece renders as ' ⁇ '.
    A model without a "<sep>" piece (one not trained here) uses eos as its separator.
    """

    kind = "sentencepiece"

    def __init__(self, model_path: str):
        self.model_path = model_path
        try:
            with open(model_path, "rb") as f:
                # Kept in memory so save() works even if model_path is later moved or overwritten.
                self._model_bytes = f.read()
            self._processor = spm.SentencePieceProcessor(model_proto=self._model_bytes)
        except (OSError, RuntimeError) as e:
            raise DataError(f"cannot load SentencePiece model: {e}", file=model_path) from e
        self._special_ids = self._find_special_ids()

    def _find_special_ids(self) -> dict[str, int]:
        sp = self._processor
        ids = {"pad": sp.pad_id(), "bos": sp.bos_id(), "eos": sp.eos_id(), "unk": sp.unk_id()}
        for name, i in ids.items():
            if i < 0:  # sentencepiece says -1 for a special the model was trained without
                raise DataError(f"SentencePiece model has no {name!r} special token", file=self.model_path)
        sep_id = sp.piece_to_id(SEP_PIECE)  # returns unk's id for a missing piece
        ids["sep"] = sep_id if sp.id_to_piece(sep_id) == SEP_PIECE else ids["eos"]
        return ids

    @property
    def vocab_size(self) -> int:
        return self._processor.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self._processor.encode(text, out_type=int)

    def decode(self, ids) -> str:
        dropped, size = self.dropped_on_decode, self.vocab_size
        # sentencepiece raises on out-of-range ids; a sampled model output should still decode.
        kept = [i if 0 <= i < size else self.unk_id for i in as_id_list(ids) if i not in dropped]
        return self._processor.decode(kept)

    def _save_files(self, directory: str) -> dict:
        with open(os.path.join(directory, MODEL_FILE), "wb") as f:
            f.write(self._model_bytes)
        return {"model_file": MODEL_FILE}
