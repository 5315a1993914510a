"""Text-side tasks: seq2seq (translation, summarisation, chat) and classification (text and/or image)."""

from __future__ import annotations

from sora_jax.data.tasks.common import TaskBuilder


class Seq2SeqBuilder(TaskBuilder):
    """source text -> target text: the source goes to the encoder, the target to the decoder."""

    task = "seq2seq"

    def check_spec(self):
        self.spec.require(self.task, text=True, decoder=True)

    def build(self, record, rng):
        text, valid = self.encoder_tokens(self.get_text(record, self.fields.source), self.spec.text_len)
        return {"text": text, "text_valid": valid,
                **self.decoder_arrays(self.get_text(record, self.fields.target), self.spec.decoder_len)}


class ClassifyBuilder(TaskBuilder):
    """text and/or image -> class id. Uses the text field if the spec has text and the record has
    it, and the image field likewise; a record with neither is an error."""

    task = "classify"

    def build(self, record, rng):
        out = {"label": self.get_label(record, self.fields.label, self.options.get("num_classes"))}
        if self.spec.text_len and self.fields.text in record:
            out["text"], out["text_valid"] = self.encoder_tokens(self.get_text(record, self.fields.text),
                                                                 self.spec.text_len)
        if self.spec.image_size and self.fields.image in record:
            out["image"] = self.get_image(record, self.fields.image, rng)
            out["image_present"] = True
        if len(out) == 1:
            raise self.error(record, f"needs a text field {self.fields.text!r} or an image field "
                                     f"{self.fields.image!r} (with data.text_len / data.image_size > 0)")
        return out
