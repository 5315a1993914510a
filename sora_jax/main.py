"""Training entry point.

    python -m sora_jax.main --config=configs/NAME.py --workdir=DIR [--config.a.b=VALUE ...]

The same command resumes from the newest complete checkpoint in DIR. Exit codes: 0 done (or
stopped cleanly by SIGTERM after saving), 2 bad input (config, data, flags, devices) with one
line saying what and where, 3 aborted on non-finite values, other non-zero for crashes.
"""

from __future__ import annotations

import logging
import os
import sys

from absl import flags
from absl import logging as absl_logging
from ml_collections import config_flags

from sora_jax.cli import _innermost, config_file_error, fail as _fail, run_app

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/NAME.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
flags.mark_flags_as_required(["config", "workdir"])

ABORTED = 3  # bad input exits with sora_jax.cli.BAD_INPUT (2)


def _main(argv):
    del argv
    from sora_jax.data.errors import DataError
    from sora_jax.models.config import ConfigError
    from sora_jax.train.checkpoint import CheckpointMismatch
    from sora_jax.train.errors import ConfigurationError

    try:  # ml_collections reports a config file that failed to load only when it is first read
        config = _CONFIG.value
        config.distributed  # noqa: B018 - the first read raises a load failure
    except Exception as e:  # noqa: BLE001 - whatever the config file's own code raised
        _fail(config_file_error(_innermost(e)))
    workdir = os.path.abspath(_WORKDIR.value)
    parent = os.path.dirname(workdir)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        _fail(f"--workdir: {workdir} exists and is not a directory")
    if not os.path.exists(parent):
        _fail(f"--workdir: parent directory {parent} does not exist")
    if not os.path.isdir(parent):
        _fail(f"--workdir: {parent} is not a directory")
    created = not os.path.isdir(workdir)
    if created:
        try:
            os.makedirs(workdir, exist_ok=True)  # several hosts may make a shared workdir at once
        except OSError as e:
            _fail(f"--workdir: cannot create {workdir}: {e.strerror}")
    if not os.access(workdir, os.W_OK):
        _fail(f"--workdir: {workdir} is not writable")
    if config.train.reuse_host_memory:  # before the runtime starts its threads
        from sora_jax.train import host_memory
        host_memory.reuse_freed_memory()
    # Our own progress at INFO; library internals (Orbax, XLA bridges) only when they warn.
    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("sora_jax").setLevel(logging.INFO)
    try:
        from sora_jax.train import distributed, loop
        distributed.maybe_initialize(config.distributed)
        code = loop.train(config, workdir)
    except (ConfigurationError, ConfigError, DataError, CheckpointMismatch) as e:
        if created:
            _remove_if_empty(workdir)  # bad input leaves no trace of a run that never started
        _fail(str(e))
    except loop.TrainingAborted as e:
        _fail(str(e), ABORTED)
    sys.exit(code)


def _remove_if_empty(workdir):
    try:
        os.rmdir(workdir)  # only an empty directory; another process's files keep it
    except OSError:
        pass


def run():
    run_app(_main)


if __name__ == "__main__":
    run()
