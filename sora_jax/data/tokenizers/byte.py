"""Byte-level tokenizer: one id per UTF-8 byte, so it needs no training and never loses text."""

from __future__ import annotations

from sora_jax.data.tokenizers.base import Tokenizer, as_id_list

PAD_ID, BOS_ID, EOS_ID, UNK_ID, SEP_ID = 0, 1, 2, 3, 4
BYTE_OFFSET = 5  # byte b has id b + BYTE_OFFSET; the specials sit below
VOCAB_SIZE = BYTE_OFFSET + 256

# What an unknown or out-of-range id decodes to, inserted as bytes so that it joins the stream
# like any other character.
_REPLACEMENT_BYTES = "\ufffd".encode("utf-8")


class ByteTokenizer(Tokenizer):
    """ids: pad=0, bos=1, eos=2, unk=3, sep=4, byte b -> b + 5 (vocab_size 261).

    encode/decode round-trips every str exactly (lone surrogates excepted: they are not valid
    UTF-8, so encode raises UnicodeEncodeError for them, like str.encode does).
    """

    kind = "byte"
    _special_ids = {"pad": PAD_ID, "bos": BOS_ID, "eos": EOS_ID, "unk": UNK_ID, "sep": SEP_ID}

    @property
    def vocab_size(self) -> int:
        return VOCAB_SIZE

    def encode(self, text: str) -> list[int]:
        return [byte + BYTE_OFFSET for byte in text.encode("utf-8")]

    def decode(self, ids) -> str:
        dropped = self.dropped_on_decode
        data = bytearray()
        for i in as_id_list(ids):
            if i in dropped:
                continue
            if BYTE_OFFSET <= i < VOCAB_SIZE:
                data.append(i - BYTE_OFFSET)
            else:  # unk, negative or >= vocab_size: the text is lost, say so visibly
                data += _REPLACEMENT_BYTES
        # A model may emit a cut-off multi-byte sequence; show it as U+FFFD rather than fail.
        return data.decode("utf-8", errors="replace")

    def _save_files(self, directory: str) -> dict:
        return {}  # nothing learnt: the config's "kind" is enough to rebuild it
