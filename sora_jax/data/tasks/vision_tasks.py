"""Image tasks: captioning, visual question answering, text-to-image and inpainting."""

from __future__ import annotations

from sora_jax.data.inpaint_masks import make_mask
from sora_jax.data.tasks.common import TaskBuilder


class CaptionBuilder(TaskBuilder):
    """image -> caption (a record may hold a list of captions: one is picked per example)."""

    task = "caption"

    def check_spec(self):
        self.spec.require(self.task, image=True, decoder=True)

    def caption(self, record, rng):
        value = self.get(record, self.fields.caption)
        if isinstance(value, list):
            if not value:
                raise self.error(record, "empty caption list", self.fields.caption)
            return self.as_text(record, value[int(rng.integers(len(value)))], self.fields.caption)
        return self.get_text(record, self.fields.caption)

    def build(self, record, rng):
        return {"image": self.get_image(record, self.fields.image, rng), "image_present": True,
                **self.decoder_arrays(self.caption(record, rng), self.spec.decoder_len)}


class VQABuilder(TaskBuilder):
    """image + question -> answer. Reads question/answer fields, or picks one pair from a "qa" list."""

    task = "vqa"

    def check_spec(self):
        self.spec.require(self.task, text=True, image=True, decoder=True)

    def question_answer(self, record, rng):
        if self.fields.qa in record:
            pairs = record[self.fields.qa]
            if not isinstance(pairs, list) or not pairs or not all(
                    isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
                raise self.error(record, "expected a non-empty list of [question, answer] pairs", self.fields.qa)
            q, a = pairs[int(rng.integers(len(pairs)))]
            return self.as_text(record, q, self.fields.qa), self.as_text(record, a, self.fields.qa)
        return self.get_text(record, self.fields.question), self.get_text(record, self.fields.answer)

    def build(self, record, rng):
        question, answer = self.question_answer(record, rng)
        text, valid = self.encoder_tokens(question, self.spec.text_len)
        return {"image": self.get_image(record, self.fields.image, rng), "image_present": True,
                "text": text, "text_valid": valid, **self.decoder_arrays(answer, self.spec.decoder_len)}


class TextToImageBuilder(CaptionBuilder):
    """caption -> image (the GAN's conditional generation)."""

    task = "t2i"

    def check_spec(self):
        self.spec.require(self.task, text=True, image=True)

    def build(self, record, rng):
        text, valid = self.encoder_tokens(self.caption(record, rng), self.spec.text_len)
        out = {"image": self.get_image(record, self.fields.image, rng), "image_present": True,
               "text": text, "text_valid": valid}
        if self.fields.label in record:  # the prompted class, for conditional accuracy
            out["label"] = self.get_label(record, self.fields.label, self.options.get("num_classes"))
        return out


class InpaintBuilder(TextToImageBuilder):
    """image + hole mask + caption -> the full image. Masks are seeded per example: random boxes,
    free-form strokes, or a mix (option mask_kind)."""

    task = "inpaint"

    def build(self, record, rng):
        out = super().build(record, rng)
        out["inpaint_mask"] = make_mask(rng, self.spec.image_size, self.options.get("mask_kind", "mixed"))
        return out
