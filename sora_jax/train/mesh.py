"""The device mesh: axes ("data", "fsdp", "tensor"), shape from config with -1 meaning "the rest"."""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

from sora_jax.train.errors import ConfigurationError

AXES = ("data", "fsdp", "tensor")


def resolve_shape(shape, num_devices: int) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ConfigurationError(f"config key mesh.shape: needs {len(AXES)} integer sizes for axes {AXES}, "
                                 f"got {shape!r}") from None
    if len(shape) != len(AXES):
        raise ConfigurationError(f"config key mesh.shape: needs {len(AXES)} sizes for axes {AXES}, got {shape}")
    if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
        raise ConfigurationError(f"config key mesh.shape: sizes must be positive with at most one -1, got {shape}")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if num_devices % known:
            raise ConfigurationError(f"config key mesh.shape: {shape} cannot fill {num_devices} devices "
                                     f"({num_devices} is not divisible by {known})")
        shape = tuple(num_devices // known if s == -1 else s for s in shape)
    if math.prod(shape) != num_devices:
        raise ConfigurationError(f"config key mesh.shape: {shape} needs {math.prod(shape)} devices; "
                                 f"this run has {num_devices}")
    return shape


def make_mesh(shape, devices=None) -> Mesh:
    """A mesh over all devices (or the given ones). Auto axis types: shardings are placed by
    in/out_shardings and logical constraints, the classic jit style."""
    devices = jax.devices() if devices is None else list(devices)
    shape = resolve_shape(shape, len(devices))
    try:
        return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=devices)
    except (ValueError, TypeError):  # device layouts make_mesh cannot fit: plain order
        return Mesh(np.asarray(devices).reshape(shape), AXES, axis_types=(AxisType.Auto,) * len(AXES))
