"""The train state: an explicit pytree of step, parameters, optimizer state and counters, plus
the image generator's own state (sora_jax.gan.step.GANState) when the model has one."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: number of updates applied
    params: Any
    opt_state: Any
    nonfinite_skipped: jax.Array  # int32 scalar: updates dropped for non-finite loss or gradients
    gan: Any = None  # GANState: generator, discriminator, their optimizers and the EMA generator

    @classmethod
    def create(cls, params, tx, gan=None):
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                   nonfinite_skipped=jnp.zeros((), jnp.int32), gan=gan)
