"""A trained run loaded from its workdir for inference: config, tokenizer, model, GAN parts and
the parameters of its newest (or a chosen) checkpoint, on one device."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import inspect
import json
import os
import sys
import tempfile
import time
from typing import Any

import jax
import ml_collections

from sora_jax.cli import exit_at_once_on_failure, one_line
from sora_jax.data.loader import components_config, example_spec
from sora_jax.models.config import SoraConfig
from sora_jax.models.sora import SoraModel
from sora_jax.train import init as init_lib
from sora_jax.train import optimizer as optim_lib
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
    ckpt = Checkpointer(workdir, async_save=False)
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
        with _library_noise_held_back(lambda: bool(failed)):
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


@contextlib.contextmanager
def _library_noise_held_back(any_failed):
    """Restore attempts with the process's stderr (fd 2) held back: a checkpoint that fails to
    restore leaves Orbax's reads of it running, and their threads print tracebacks ("Event loop
    is closed") while the next attempt runs. If an attempt failed, what was printed is dropped
    (the failures are reported in one line each) and the rest of the process is kept quiet of
    it; otherwise it is passed on."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            if any_failed():
                time.sleep(0.2)  # let the abandoned reads finish while their output is held back
                _quiet_abandoned_reads()
                exit_at_once_on_failure()
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if not any_failed():
                held.seek(0)
                sys.stderr.write(held.read().decode(errors="replace"))


def _quiet_abandoned_reads():
    """A checkpoint that fails to restore leaves Orbax's reads of it as coroutines that were never
    awaited; Python prints their errors when it collects them ("Exception ignored in: <coroutine
    ...>", a traceback), after the one-line message. Those are dropped from here on, and collected now."""
    previous = sys.unraisablehook
    if getattr(previous, "_drops_coroutines", False):
        return

    def hook(unraisable):
        if not inspect.iscoroutine(unraisable.object):
            previous(unraisable)
    hook._drops_coroutines = True
    sys.unraisablehook = hook
    gc.collect()


def _read_config(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return ml_collections.ConfigDict(json.load(f))
    except json.JSONDecodeError as e:
        raise ConfigurationError(f"--workdir: {path}:{e.lineno}: not JSON ({e.msg})") from None
    except (UnicodeDecodeError, OSError, TypeError, ValueError) as e:  # not UTF-8, a folder, not an object
        raise ConfigurationError(f"--workdir: {path}: cannot read the run's config ({type(e).__name__}: "
                                 f"{one_line(e)})") from None
