"""From an experiment config to data: the tokenizer, the example spec, and the training and
evaluation datasets for this process."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time

from sora_jax.data import datasets, pipeline
from sora_jax.data.errors import ON_ERROR, DataError
from sora_jax.data.images import ImageTransform
from sora_jax.data.schema import TASKS, ExampleSpec
from sora_jax.data.tasks import make_builder
from sora_jax.data.tokenizers import load_tokenizer, make_tokenizer, train_sentencepiece
from sora_jax.data.tokenizers.base import CONFIG_FILE

log = logging.getLogger(__name__)

MIXTURE = "mixture"
SENTENCEPIECE_TYPES = ("bpe", "unigram")


def example_spec(data_cfg) -> ExampleSpec:
    return ExampleSpec(text_len=data_cfg.text_len, decoder_len=data_cfg.decoder_len,
                       image_size=data_cfg.image_size, channels=data_cfg.channels)


def components_config(data_cfg) -> dict:
    """name -> {dataset, task, weight, ...}: the mixture, or the single data.name / data.task."""
    if data_cfg.name != MIXTURE:
        return {f"{data_cfg.name}/{data_cfg.task}": {"dataset": data_cfg.name, "task": data_cfg.task, "weight": 1.0}}
    if not data_cfg.mixture:
        raise DataError("data.name is 'mixture' but data.mixture is empty", file="config", field="data.mixture")
    out = {}
    for name, entry in data_cfg.mixture.items():
        entry = dict(entry)
        for key in ("dataset", "task"):
            if key not in entry:
                raise DataError(f"mixture entry needs {key!r}", file="config", field=f"data.mixture.{name}")
        entry.setdefault("weight", 1.0)
        out[name] = entry
    return out


def tokenizer_from_config(data_cfg, workdir: str | None = None, *, process_index: int = 0,
                          wait_seconds: float = 1800.0):
    """data.tokenizer: "byte", "sentencepiece:PATH", "hf:PATH", a saved directory, or
    "sentencepiece:train": trained on the training texts by process 0, saved under
    WORKDIR/tokenizer (the other processes wait for it) and reused when the run resumes."""
    spec = data_cfg.tokenizer
    if spec != "sentencepiece:train":
        try:
            return make_tokenizer(spec)
        except DataError as e:
            if e.file is not None:  # names its file already
                raise
            raise DataError(e.reason, file="config", field="data.tokenizer") from None
    if data_cfg.sentencepiece_type not in SENTENCEPIECE_TYPES:
        raise DataError(f"must be one of {', '.join(SENTENCEPIECE_TYPES)}, got {data_cfg.sentencepiece_type!r}",
                        file="config", field="data.sentencepiece_type")
    if not workdir:
        raise DataError("'sentencepiece:train' needs a workdir to save the tokenizer", file="config",
                        field="data.tokenizer")
    directory = os.path.join(workdir, "tokenizer")
    wanted = _trained_from(data_cfg)
    deadline = time.monotonic() + wait_seconds
    while True:  # process 0 trains (or retrains) it; the others wait for the one this config asks for
        if os.path.exists(os.path.join(directory, CONFIG_FILE)):
            difference = _difference(directory, wanted)
            if difference is None:
                return load_tokenizer(directory)
            if _has_checkpoints(workdir):
                key, then, now = difference
                if key == "vocab_size":  # the model's embeddings follow it: the checkpoints cannot fit
                    raise DataError(f"{now!r} differs from the {then!r} that {directory} was trained with, and "
                                    f"this workdir's checkpoints use that tokenizer (use the saved value, or a new "
                                    f"workdir)", file="config", field=f"data.{key}")
                log.warning("data.%s differs from what the tokenizer in %s was trained with; its checkpoints "
                            "use that tokenizer, so it is kept", key, directory)
                return load_tokenizer(directory)
            if process_index == 0:  # left by an attempt that failed before its first checkpoint
                log.info("the tokenizer in %s was trained for another data.%s and no checkpoint uses it: "
                         "training it again", directory, difference[0])
                break
        elif process_index == 0:
            break
        if time.monotonic() > deadline:
            raise DataError(f"process 0 did not save the trained tokenizer within {wait_seconds:.0f} s",
                            file=directory)
        time.sleep(1.0)

    def texts():
        seen = set()  # a dataset serving several tasks (shapes: caption, vqa, ...) is read once
        for entry in components_config(data_cfg).values():
            key = (entry["dataset"], entry.get("train_path", ""))
            if key not in seen:
                seen.add(key)
                yield from datasets.corpus_texts(entry["dataset"], data_cfg, entry)

    # Trained into a temporary folder and renamed, so a reader never sees a half-written tokenizer.
    temp = f"{directory}.partial-{os.getpid()}"
    train_sentencepiece(texts(), data_cfg.vocab_size, temp, model_type=data_cfg.sentencepiece_type)
    with open(os.path.join(temp, TRAINED_FROM), "w") as f:
        json.dump(wanted, f, indent=1)
    if os.path.exists(directory):  # the stale one: aside, then removed once the new one is in place
        stale = f"{directory}.stale-{os.getpid()}"
        os.replace(directory, stale)
        os.replace(temp, directory)
        shutil.rmtree(stale)
    else:
        os.replace(temp, directory)
    return load_tokenizer(directory)


TRAINED_FROM = "trained_from.json"  # beside a trained tokenizer: the settings it was trained with


def _trained_from(data_cfg) -> dict:
    default_path = str(data_cfg.get("train_path", "") or "")  # a single dataset's, outside any mixture entry
    corpus = sorted({(entry["dataset"], str(entry.get("train_path", "") or default_path))
                     for entry in components_config(data_cfg).values()})
    return {"vocab_size": int(data_cfg.vocab_size), "sentencepiece_type": data_cfg.sentencepiece_type,
            "corpus": [list(item) for item in corpus]}


def _difference(directory: str, wanted: dict):
    """(key, saved value, wanted value) of the first setting the saved tokenizer was trained with
    otherwise, or None. A tokenizer saved without the record (by an earlier version) is taken as is."""
    try:
        with open(os.path.join(directory, TRAINED_FROM)) as f:
            saved = json.load(f)
    except FileNotFoundError:
        if os.path.exists(os.path.join(directory, CONFIG_FILE)):
            return None
        return ("vocab_size", None, wanted["vocab_size"])  # being replaced right now: wait for the new one
    for key, value in wanted.items():
        if saved.get(key) != value:
            return ("name" if key == "corpus" else key), saved.get(key), value
    return None


def _has_checkpoints(workdir: str) -> bool:
    folder = os.path.join(workdir, "checkpoints")  # sora_jax.train.checkpoint.CHECKPOINT_DIR
    return os.path.isdir(folder) and any(name.isdigit() for name in os.listdir(folder))


def _check(data_cfg):
    if data_cfg.on_error not in ON_ERROR:
        raise DataError(f"must be one of {', '.join(ON_ERROR)}, got {data_cfg.on_error!r}", file="config",
                        field="data.on_error")
    for name, entry in components_config(data_cfg).items():
        if entry["task"] not in TASKS:
            raise DataError(f"unknown task {entry['task']!r}; choose one of {', '.join(TASKS)}", file="config",
                            field="data.task")
        datasets.check_task(entry["dataset"], entry["task"])


def make_components(data_cfg, split: str, tokenizer, *, train: bool) -> list[pipeline.Component]:
    _check(data_cfg)
    spec = example_spec(data_cfg)
    components = []
    for name, entry in components_config(data_cfg).items():
        source, fields, options = datasets.open_dataset(entry["dataset"], split, data_cfg, tokenizer, entry,
                                                        task=entry["task"])
        transform = None
        if spec.image_size:
            transform = ImageTransform(spec.image_size, spec.channels, random_crop=train and data_cfg.random_crop,
                                       flip=train and data_cfg.flip, crop_scale=1.125 if train and data_cfg.random_crop else 1.0)
        try:
            builder = make_builder(entry["task"], spec, tokenizer, fields, transform, pack=train and data_cfg.pack,
                                   train=train, mask_kind=data_cfg.mask_kind, **options)
        except ValueError as e:
            raise DataError(str(e), file="config", field=f"data.mixture.{name}" if data_cfg.name == MIXTURE
                            else "data.task") from None
        components.append(pipeline.Component(name, source, builder, float(entry["weight"])))
    return components


def _per_process(batch_size, process_count, key):
    if batch_size % process_count:
        raise DataError(f"{batch_size} is not divisible by the {process_count} processes", file="config", field=key)
    return batch_size // process_count


PROCESS_LAYOUTS = ("per_process", "global")


def process_layout(data_cfg) -> str:
    layout = data_cfg.get("process_layout", "per_process")
    if layout not in PROCESS_LAYOUTS:
        raise DataError(f"{layout!r} is not one of {', '.join(PROCESS_LAYOUTS)}", file="config",
                        field="data.process_layout")
    return layout


class _Rows:
    """This process's rows of a global batch (a class, so worker processes can pickle it)."""

    def __init__(self, start: int, stop: int):
        self.start, self.stop = start, stop

    def __call__(self, batch):
        return {k: v[self.start:self.stop] for k, v in batch.items()}


def train_dataset(config, tokenizer, *, process_index: int = 0, process_count: int = 1):
    """Endless batches for this process: data.batch_size / process_count examples each (see
    data.process_layout for which)."""
    d = config.data
    per_process = _per_process(d.batch_size, process_count, "data.batch_size")
    shared = process_layout(d) == "global"
    ds = pipeline.training_dataset(
        make_components(d, "train", tokenizer, train=True), example_spec(d),
        batch_size=d.batch_size if shared else per_process, seed=config.seed,
        process_index=0 if shared else process_index, process_count=1 if shared else process_count,
        on_error=d.on_error, num_workers=d.num_workers, worker_buffer_size=d.worker_buffer_size,
        read_threads=d.read_threads, prefetch_batches=d.prefetch_batches)
    if shared and process_count > 1:
        ds = ds.map(_Rows(process_index * per_process, (process_index + 1) * per_process))
    return ds


def eval_datasets(config, tokenizer, split: str = "validation", *, process_index: int = 0, process_count: int = 1):
    """name -> one padded pass over the split, per mixture component."""
    d = config.data
    batch = _per_process(d.eval_batch_size, process_count, "data.eval_batch_size")
    return {c.name: pipeline.evaluation_dataset(c, example_spec(d), batch_size=batch, process_index=process_index,
                                                process_count=process_count, on_error=d.on_error, seed=config.seed)
            for c in make_components(d, split, tokenizer, train=False)}
