"""Language modelling: text -> next-token targets.

Two record shapes: {"text": str} documents ([bos] text [eos], truncated and padded to one row,
or with pack=True left whole for the pipeline to cut into rows and pack), and {"ids": int array}
windows cut from a pre-tokenised corpus (a random offset in training, so every epoch sees
different cuts; offset 0 with train=False). Options: pack, train."""

from __future__ import annotations

import numpy as np

from sora_jax.data.tasks.common import TaskBuilder, pad_decoder


MAX_PACKED_ROWS = 64


class LMBuilder(TaskBuilder):
    task = "lm"

    def check_spec(self):
        self.spec.require(self.task, decoder=True)

    @property
    def pack(self) -> bool:
        return bool(self.options.get("pack", False))

    def build(self, record, rng):
        T = self.spec.decoder_len
        if "ids" in record:
            ids = np.asarray(record["ids"], np.int32)
            if ids.ndim != 1 or len(ids) < T + 1:
                raise self.error(record, f"needs a 1-D token window of at least {T + 1} ids", "ids")
            # Training cuts at a random offset; evaluation at 0, so windows tile the text exactly once.
            start = int(rng.integers(0, len(ids) - T)) if self.options.get("train", True) else 0
            window = ids[start:start + T + 1]
            return pad_decoder(window[:-1], window[1:], T, self.tokenizer.pad_id)
        text = self.get_text(record, self.fields.text)
        tok = self.tokenizer
        ids = np.asarray([tok.bos_id] + tok.encode(text) + [tok.eos_id], np.int32)
        if not self.pack:  # one row per document: longer documents are truncated
            ids = ids[: T + 1]
            return pad_decoder(ids[:-1], ids[1:], T, tok.pad_id)
        # Variable length for the pipeline, which cuts it into rows of T and packs them; documents
        # beyond MAX_PACKED_ROWS rows are truncated.
        ids = ids[: MAX_PACKED_ROWS * T + 1]
        n = len(ids) - 1
        return {"decoder_inputs": ids[:-1], "decoder_targets": ids[1:], "decoder_mask": np.ones(n, np.float32)}
