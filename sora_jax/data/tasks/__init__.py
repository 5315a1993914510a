"""Task builders: raw record -> fixed-shape example (see sora_jax/data/schema.py)."""

from sora_jax.data.tasks.common import FieldNames, TaskBuilder
from sora_jax.data.tasks.lm import LMBuilder
from sora_jax.data.tasks.text_tasks import ClassifyBuilder, Seq2SeqBuilder
from sora_jax.data.tasks.vision_tasks import CaptionBuilder, InpaintBuilder, TextToImageBuilder, VQABuilder

BUILDERS = {b.task: b for b in (LMBuilder, Seq2SeqBuilder, ClassifyBuilder, CaptionBuilder, VQABuilder,
                                TextToImageBuilder, InpaintBuilder)}


def make_builder(task: str, spec, tokenizer, fields=FieldNames(), image_transform=None, **options) -> TaskBuilder:
    if task not in BUILDERS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(BUILDERS)}")
    return BUILDERS[task](spec, tokenizer, fields, image_transform, **options)


__all__ = ["BUILDERS", "FieldNames", "TaskBuilder", "make_builder"]
