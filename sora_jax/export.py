"""Export a trained run's parameters to safetensors.

    python -m sora_jax.export --workdir=DIR --out=model.safetensors [--step=N] [--dtype=bfloat16] \\
        [--part=text_encoder]

Writes the newest (or --step) checkpoint's Sora model parameters, or one part of them
(text_encoder, image_encoder, fusion, decoder, ...; names then start below the part), with flat
"/"-joined names; for a run with the image generator, `--part=generator` (its moving-average
weights, which `generate` samples with) or `--part=discriminator`. The header's metadata holds the
step and the run's config as JSON. Load them back with
sora_jax.interop.safetensors_io.load_params(path, like=params). Bad input: one line on stderr,
exit code 2.
"""

from __future__ import annotations

import json
import os

from absl import flags
from absl import logging as absl_logging

from sora_jax.cli import fail, run_app

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's directory.")
_OUT = flags.DEFINE_string("out", None, "The .safetensors file to write.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Stored precision.")
_PART = flags.DEFINE_string("part", None, "Only this top-level part of the parameters.")
flags.mark_flags_as_required(["workdir", "out"])


def _main(argv):
    del argv
    absl_logging.set_verbosity(absl_logging.WARNING)
    out = os.path.abspath(_OUT.value)
    if not os.path.isdir(os.path.dirname(out)):
        fail(f"--out: directory {os.path.dirname(out)} does not exist")
    if os.path.isdir(out):
        fail(f"--out: {out} is a directory; give a file name")
    from sora_jax.infer.run import load_run
    from sora_jax.interop.safetensors_io import save_params
    from sora_jax.models.config import ConfigError
    from sora_jax.train.errors import ConfigurationError
    try:
        run = load_run(_WORKDIR.value, _STEP.value)
    except (ConfigurationError, ConfigError) as e:
        fail(str(e))
    params = run.state.params
    parts = dict(params)
    if run.state.gan is not None:  # the image generator's parts, apart from the Sora model's
        parts.update(generator=run.state.gan.ema_params, discriminator=run.state.gan.d_params)
    if _PART.value:
        if _PART.value not in parts:
            fail(f"--part: {_PART.value!r} is not one of {', '.join(sorted(parts))}")
        params = parts[_PART.value]
    metadata = {"step": run.step, "part": _PART.value or "", "config": json.dumps(run.config.to_dict())}
    save_params(params, out, dtype=_DTYPE.value, metadata=metadata)
    print(f"wrote {out} (step {run.step}, {_DTYPE.value}{', ' + _PART.value if _PART.value else ''})")


def run():
    run_app(_main)


if __name__ == "__main__":
    run()
