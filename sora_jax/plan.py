"""Compile-only plan of a training run on a target mesh, before anyone pays for accelerators.

    python -m sora_jax.plan --config=configs/sora_base.py --mesh=16,8,1 [--device_memory_gb=141] \\
        [--peak_tflops=989] [--out=plan.json]

The train step is compiled ahead of time for data x fsdp x tensor fake CPU devices from
abstract shapes (nothing is allocated) and the report gives: parameters by part, model FLOPs
per step, per-device parameter / optimizer bytes from the shardings, the compiled executable's
per-device arguments, outputs and temporaries, the bytes each kind of collective moves per
device per step, and whether it fits in --device_memory_gb (with what to change when it does
not). Temporaries come from XLA:CPU's compile of the same program: a guide for an accelerator's,
not its exact figure. Bad input: one line on stderr, exit code 2.
"""

from __future__ import annotations

import json
import math
import os

from absl import flags
from absl import logging as absl_logging
from ml_collections import config_flags

from sora_jax.cli import fail, one_line, run_app

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/NAME.py).")
_MESH = flags.DEFINE_string("mesh", None, "data,fsdp,tensor sizes of the target mesh, e.g. 16,8,1.")
_MEMORY = flags.DEFINE_float("device_memory_gb", 0.0, "Memory per device in GiB (0: no fit check).")
_PEAK = flags.DEFINE_float("peak_tflops", 0.0, "Peak TFLOP/s per device (0: no step-time bound).")
_OUT = flags.DEFINE_string("out", None, "Also write the plan as JSON here.")
flags.mark_flags_as_required(["config", "mesh"])


def _mesh_shape(text):
    try:
        shape = tuple(int(x) for x in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        fail(f"--mesh: expected three positive sizes data,fsdp,tensor, got {text!r}")
    return shape


def _main(argv):
    del argv
    try:  # ml_collections reports a config file that failed to load only when it is first read
        config = _CONFIG.value
        config.mesh  # noqa: B018 - the first read raises a load failure
    except OSError as e:
        fail("--config: " + one_line(e))
    shape = _mesh_shape(_MESH.value)
    if _OUT.value and not os.path.isdir(os.path.dirname(os.path.abspath(_OUT.value))):
        fail(f"--out: directory {os.path.dirname(os.path.abspath(_OUT.value))} does not exist")
    # Fake CPU devices stand in for the target's accelerators; set before jax creates its backend.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={math.prod(shape)}").strip()
    import jax
    jax.config.update("jax_platforms", "cpu")
    absl_logging.set_verbosity(absl_logging.WARNING)
    from sora_jax.data.errors import DataError
    from sora_jax.models.config import ConfigError
    from sora_jax.train.errors import ConfigurationError
    from sora_jax.train.planner import format_plan, plan
    if len(jax.devices()) < math.prod(shape):
        fail(f"--mesh: needs {math.prod(shape)} devices; jax already has {len(jax.devices())} (unset XLA_FLAGS)")
    try:
        result = plan(config, shape, device_memory_gb=_MEMORY.value, peak_tflops=_PEAK.value)
    except (ConfigurationError, ConfigError, DataError) as e:
        fail(str(e))
    print(format_plan(result))
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {_OUT.value}")


def run():
    run_app(_main)


if __name__ == "__main__":
    run()
