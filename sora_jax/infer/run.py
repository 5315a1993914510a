"""A trained run loaded from its workdir for inference: config, tokenizer, model, GAN parts and
the parameters of its newest (or a chosen) checkpoint, on one device."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from typing import Any

import jax
import ml_collections

from sora_jax.cli import one_line
from sora_jax.data.loader import components_config, example_spec
from sora_jax.models.config import SoraConfig
from sora_jax.models.sora import SoraModel
from sora_jax.train import init as init_lib
from sora_jax.train import optimizer as optim_lib
from sora_jax.train import restore_noise
from sora_jax.train.checkpoint import CHECKPOINT_DIR, Checkpointer, tokenizer_from_record
from sora_jax.train.errors import ConfigurationError
from sora_jax.train.gan import make_gan_parts
from sora_jax.train.loop import CONFIG_FILE
from sora_jax.train.mesh import make_mesh


@dataclasses.dataclass
class Run:
    config: Any
    model: SoraModel
    tokenizer: Any
    gan: Any  # sora_jax.train.gan.GANParts, or None
    state: Any  # TrainState (parameters, EMA generator, ...)
    step: int


def load_run(workdir: str, step: int | None = None) -> Run:
    """ConfigurationError (one line, naming the path) when the workdir, its config or the
    checkpoint is missing or unreadable. Without `step`, a newest checkpoint that cannot be read is
    skipped for the one before it (with a warning on stderr), as the trainer does."""
    workdir = os.path.abspath(workdir)
    if not os.path.isdir(workdir):
        raise ConfigurationError(f"--workdir: {workdir} does not exist")
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise ConfigurationError(f"--workdir: {path} is missing (not a training run's directory)")
    config = _read_config(path)
    if not os.path.isdir(os.path.join(workdir, CHECKPOINT_DIR)):
        raise ConfigurationError(f"--workdir: no checkpoint in {os.path.join(workdir, CHECKPOINT_DIR)}")
    ckpt = Checkpointer(workdir, async_save=False, read_only=True)  # a trainer may be saving into it now
    try:
        steps = ckpt.steps()
        if not steps:
            raise ConfigurationError(f"--workdir: no checkpoint in {ckpt.directory}")
        if step is not None and step not in steps:
            raise ConfigurationError(f"--step: no checkpoint for step {step} in {ckpt.directory} "
                                     f"(have {', '.join(map(str, steps))})")
        try:
            model = SoraModel(SoraConfig.from_dict(config.model))
            tasks = {entry["task"] for entry in components_config(config.data).values()}
            gan = make_gan_parts(config, model, tasks)
            tx = optim_lib.make_optimizer(config.optim, config.train.num_steps)
            spec = example_spec(config.data)
        except (KeyError, AttributeError, TypeError) as e:  # a hand-edited config.json
            raise ConfigurationError(f"--workdir: {path} is not a run's config ({type(e).__name__}: "
                                     f"{one_line(e)})") from None
        mesh = make_mesh((1, 1, 1), jax.devices()[:1])
        abstract, _ = init_lib.abstract_state(model, tx, spec, mesh, (), gan)
        failed, restored = [], None
        with restore_noise.held_back(lambda: bool(failed)):
            for candidate in [step] if step is not None else reversed(steps):
                try:
                    meta = ckpt.read_meta(candidate)
                    with tempfile.TemporaryDirectory() as d:
                        tokenizer = tokenizer_from_record(meta["tokenizer"], d)
                    restored = candidate, tokenizer, ckpt.restore_state(candidate, abstract)
                    break
                except Exception as e:  # noqa: BLE001 - any failure means: this checkpoint is unreadable
                    failed.append((candidate, f"{type(e).__name__}: {one_line(e)[:200]}"))
        if restored is not None:
            candidate, tokenizer, state = restored
            for bad, reason in failed:  # only now: when none restores, the error alone is the output
                print(f"warning: checkpoint at step {bad} in {ckpt.directory} cannot be read ({reason}); "
                      f"using step {candidate}", file=sys.stderr)
            return Run(config, model, tokenizer, gan, state, candidate)
    finally:
        ckpt.close()
    bad, reason = failed[0]
    if step is not None:
        raise ConfigurationError(f"--step: checkpoint {step} in {ckpt.directory} cannot be read with {path} "
                                 f"({reason})")
    raise ConfigurationError(f"--workdir: no checkpoint in {ckpt.directory} (steps {', '.join(map(str, steps))}) "
                             f"can be read with {path} (edited since they were written?); step {bad}: {reason}")


def _read_config(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return ml_collections.ConfigDict(json.load(f))
    except json.JSONDecodeError as e:
        raise ConfigurationError(f"--workdir: {path}:{e.lineno}: not JSON ({e.msg})") from None
    except (UnicodeDecodeError, OSError, TypeError, ValueError) as e:  # not UTF-8, a folder, not an object
        raise ConfigurationError(f"--workdir: {path}: cannot read the run's config ({type(e).__name__}: "
                                 f"{one_line(e)})") from None
