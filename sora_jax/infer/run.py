"""A trained run loaded from its workdir for inference: config, tokenizer, model, GAN parts and
the parameters of its newest (or a chosen) checkpoint, on one device."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Any

import jax
import ml_collections

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
    checkpoint is missing."""
    workdir = os.path.abspath(workdir)
    if not os.path.isdir(workdir):
        raise ConfigurationError(f"--workdir: {workdir} does not exist")
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise ConfigurationError(f"--workdir: {path} is missing (not a training run's directory)")
    with open(path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    if not os.path.isdir(os.path.join(workdir, CHECKPOINT_DIR)):
        raise ConfigurationError(f"--workdir: no checkpoint in {os.path.join(workdir, CHECKPOINT_DIR)}")
    ckpt = Checkpointer(workdir, async_save=False)
    try:
        steps = ckpt.steps()
        if not steps:
            raise ConfigurationError(f"--workdir: no checkpoint in {ckpt.directory}")
        if step is None:
            step = steps[-1]
        elif step not in steps:
            raise ConfigurationError(f"--step: no checkpoint for step {step} in {ckpt.directory} "
                                     f"(have {', '.join(map(str, steps))})")
        meta = ckpt.read_meta(step)
        with tempfile.TemporaryDirectory() as d:
            tokenizer = tokenizer_from_record(meta["tokenizer"], d)
        model = SoraModel(SoraConfig.from_dict(config.model))
        tasks = {entry["task"] for entry in components_config(config.data).values()}
        gan = make_gan_parts(config, model, tasks)
        tx = optim_lib.make_optimizer(config.optim, config.train.num_steps)
        mesh = make_mesh((1, 1, 1), jax.devices()[:1])
        abstract, _ = init_lib.abstract_state(model, tx, example_spec(config.data), mesh, (), gan)
        state = ckpt.restore_state(step, abstract)
    finally:
        ckpt.close()
    return Run(config, model, tokenizer, gan, state, step)
