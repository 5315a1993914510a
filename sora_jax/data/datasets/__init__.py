"""Datasets by name: the bundled offline ones and user files in the supported formats.

`open_dataset(name, split, data_cfg, tokenizer)` returns (source, field names, builder options).
"""

from __future__ import annotations

import dataclasses

from sora_jax.data.errors import DataError
from sora_jax.data.sources import FORMATS, open_source
from sora_jax.data.tasks.common import FieldNames

BUNDLED_TASKS = {
    "shapes": ("caption", "vqa", "classify", "t2i", "inpaint", "lm"),
    "digits": ("caption", "vqa", "classify", "t2i", "inpaint"),
    "shakespeare": ("lm",),
    "chat": ("seq2seq",),
}
SPLITS = ("train", "validation")


def _parse_holdout(text: str):
    pairs = []
    for item in [p.strip() for p in text.split(",") if p.strip()]:
        if "/" not in item:
            raise DataError(f"holdout entries are color/shape, got {item!r}", file="config", field="data.shapes.holdout")
        color, shape = item.split("/", 1)
        pairs.append((color.strip(), shape.strip()))
    return tuple(pairs)


def open_dataset(name: str, split: str, data_cfg, tokenizer, component=None, task: str = ""):
    """component: a mixture entry (its paths override data_cfg's)."""
    if name == "shapes":
        from sora_jax.data.datasets.shapes import ShapesSource, label_names
        o = data_cfg.shapes
        size = {"train": o.num_train, "validation": o.num_validation}.get(split)
        try:
            source = ShapesSource(split, image_size=data_cfg.image_size or 32, num_examples=size, seed=o.seed,
                                  holdout=_parse_holdout(o.holdout), label_kind=o.label_kind,
                                  max_objects=o.max_objects,
                                  existence_share=o.existence_share if split == "train" else 0.0)
        except ValueError as e:
            raise DataError(str(e), file="config", field="data.shapes") from None
        # Captions are the LM text; classification stays image-only (a caption would give the label away).
        fields = FieldNames(text="caption" if task == "lm" else "text")
        return source, fields, {"num_classes": len(label_names(o.label_kind))}
    if name == "digits":
        from sora_jax.data.datasets.digits import DigitsSource
        _check_split(name, split)
        return DigitsSource(split, image_size=data_cfg.image_size or 32), FieldNames(), {"num_classes": 10}
    if name == "shakespeare":
        from sora_jax.data.datasets.shakespeare import ShakespeareSource
        _check_split(name, split)
        return ShakespeareSource(split, tokenizer, data_cfg.decoder_len), FieldNames(), {}
    if name == "chat":
        from sora_jax.data.datasets.chat import ChatSource
        _check_split(name, split)
        return ChatSource(split), FieldNames(source="prompt", target="reply", text="prompt"), {}
    if name in FORMATS:
        paths = component if component is not None and component.get("train_path") else data_cfg
        path = paths.train_path if split == "train" else paths.validation_path
        if not path:
            raise DataError(f"data.{split}_path is empty (needed for data.name={name!r})", file="config")
        kwargs = {"mode": data_cfg.text_mode} if name == "text" else {}
        fields = FieldNames(**{f.name: data_cfg.fields[f.name] for f in dataclasses.fields(FieldNames)})
        return open_source(name, path, **kwargs), fields, {"num_classes": data_cfg.num_classes or None}
    raise DataError(f"unknown dataset {name!r}; bundled: {', '.join(BUNDLED_TASKS)}; file formats: "
                    f"{', '.join(FORMATS)}; or 'mixture'", file="config", field="data.name")


def _check_split(name, split):
    if split not in SPLITS:
        raise DataError(f"{name} has splits {', '.join(SPLITS)}, not {split!r}", file="config")


def check_task(name: str, task: str):
    allowed = BUNDLED_TASKS.get(name)
    if allowed is not None and task not in allowed:
        raise DataError(f"dataset {name!r} supports tasks {', '.join(allowed)}, not {task!r}", file="config",
                        field="data.task")


def corpus_texts(name: str, data_cfg, component=None, limit: int = 50_000):
    """Texts to train a tokenizer on (the training split's text fields)."""
    if name == "shakespeare":
        from sora_jax.data.datasets.shakespeare import split_text
        text = split_text("train")
        yield from (text[i:i + 2000] for i in range(0, len(text), 2000))
        return
    source, fields, _ = open_dataset(name, "train", data_cfg, tokenizer=None, component=component)
    # In a fixed order (dict keys, not a set, whose string order changes with each process's hash
    # seed): the texts' order changes the SentencePiece unigram model a run trains.
    keys = [k for k in dict.fromkeys((fields.text, fields.source, fields.target, fields.caption, fields.question,
                                      fields.answer)) if k]
    for i in range(min(len(source), limit)):
        record = source[i]
        for key in keys:
            if isinstance(record.get(key), str):
                yield record[key]
        for pair in record.get(fields.qa, []) or []:
            yield from (t for t in pair if isinstance(t, str))
