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

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/NAME.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
flags.mark_flags_as_required(["config", "workdir"])

BAD_INPUT, ABORTED = 2, 3


def _fail(message: str, code: int = BAD_INPUT):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def _one_line(e: BaseException) -> str:
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip()) or type(e).__name__


def _parse_flags(argv):
    try:
        return flags.FLAGS(argv)
    except (flags.Error, ValueError, KeyError, AttributeError, TypeError, FileNotFoundError) as e:
        _fail(_one_line(e))


def _main(argv):
    del argv
    from sora_jax.data.errors import DataError
    from sora_jax.models.config import ConfigError
    from sora_jax.train.checkpoint import CheckpointMismatch
    from sora_jax.train.errors import ConfigurationError

    workdir = os.path.abspath(_WORKDIR.value)
    parent = os.path.dirname(workdir)
    if not os.path.isdir(parent):
        _fail(f"--workdir: parent directory {parent} does not exist")
    # Our own progress at INFO; library internals (Orbax, XLA bridges) only when they warn.
    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("sora_jax").setLevel(logging.INFO)
    try:
        from sora_jax.train import distributed, loop
        distributed.maybe_initialize(_CONFIG.value.distributed)
        code = loop.train(_CONFIG.value, workdir)
    except (ConfigurationError, ConfigError, DataError, CheckpointMismatch) as e:
        _fail(str(e))
    except loop.TrainingAborted as e:
        _fail(str(e), ABORTED)
    sys.exit(code)


def run():
    app.run(_main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
