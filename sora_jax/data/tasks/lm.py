"""Language modelling: text -> next-token targets.

Two record shapes: {"text": str} documents ([bos] text [eos], padded, or left variable-length
for the packer when pack=True), and {"ids": int array} windows cut from a pre-tokenised corpus
(a random offset in each window, so every epoch sees different cuts)."""

from __future__ import annotations

import numpy as np

from sora_jax.data.tasks.common import TaskBuilder, pad_decoder


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
            start = int(rng.integers(0, len(ids) - T))
            window = ids[start:start + T + 1]
            return pad_decoder(window[:-1], window[1:], T, self.tokenizer.pad_id)
        text = self.get_text(record, self.fields.text)
        tok = self.tokenizer
        ids = np.asarray([tok.bos_id] + tok.encode(text) + [tok.eos_id], np.int32)[: T + 1]
        if not self.pack:
            return pad_decoder(ids[:-1], ids[1:], T, tok.pad_id)
        # Variable length, for grain's packer; num_skipped rides along as a per-token meta feature.
        n = len(ids) - 1
        return {"decoder_inputs": ids[:-1], "decoder_targets": ids[1:], "decoder_mask": np.ones(n, np.float32)}
