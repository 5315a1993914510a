"""Evaluation of a trained run.

    python -m sora_jax.evaluate --workdir=DIR [--split=validation] [--step=N] [--max_batches=N] [--beam=K]

Loss, perplexity and accuracy (the trainer's eval step), BLEU and ROUGE-1/2/L of generated
captions and seq2seq outputs, exact match of generated VQA answers, and FID / conditional
accuracy / hole metrics when the run has an image generator. Writes DIR/eval/SPLIT_stepN.json
and .md (SPLIT_stepN_beamK_batchesM with --beam / --max_batches) and prints the table. Bad input:
one line on stderr, exit code 2.
"""

from __future__ import annotations

from absl import flags
from absl import logging as absl_logging

from sora_jax.cli import fail as _fail, run_app

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's directory.")
_SPLIT = flags.DEFINE_string("split", "validation", "The split to evaluate.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
_MAX_BATCHES = flags.DEFINE_integer("max_batches", 0, "Batches per component (0: the whole split).")
_BEAM = flags.DEFINE_integer("beam", 0, "Beam width for generated outputs (0: greedy).")
flags.mark_flags_as_required(["workdir"])


def _main(argv):
    del argv
    absl_logging.set_verbosity(absl_logging.WARNING)
    from sora_jax.data.errors import DataError
    from sora_jax.eval.run_eval import evaluate_run, write_results
    from sora_jax.infer.run import load_run
    from sora_jax.infer.text import Decoding, RequestError
    from sora_jax.models.config import ConfigError
    from sora_jax.train.errors import ConfigurationError
    for flag in (_MAX_BATCHES, _BEAM):
        if flag.value < 0:
            _fail(f"--{flag.name} must be >= 0 (0: {'the whole split' if flag is _MAX_BATCHES else 'greedy'}), "
                  f"got {flag.value}")
    try:
        run = load_run(_WORKDIR.value, _STEP.value)
        _check_split(run.config, _SPLIT.value)
        results = evaluate_run(run, _WORKDIR.value, _SPLIT.value, max_batches=_MAX_BATCHES.value,
                               decoding=Decoding(beam=_BEAM.value))
    except (ConfigurationError, ConfigError, DataError, RequestError) as e:
        _fail(str(e))
    json_path, md_path = write_results(results, _WORKDIR.value, _SPLIT.value, run.step, beam=_BEAM.value,
                                       max_batches=_MAX_BATCHES.value)
    with open(md_path) as f:
        print(f.read())
    print(f"wrote {json_path} and {md_path}")


def _check_split(config, split):
    """The splits every dataset of the run has (the bundled shapes data also has a holdout split)."""
    from sora_jax.data.datasets import SPLITS
    from sora_jax.data.datasets.shapes import SPLITS as SHAPES_SPLITS
    from sora_jax.data.loader import components_config
    datasets = {entry["dataset"] for entry in components_config(config.data).values()}
    valid = [s for s in SHAPES_SPLITS if all(s in (SHAPES_SPLITS if d == "shapes" else SPLITS) for d in datasets)]
    if split not in valid:
        _fail(f"--split: unknown split {split!r}; this run's data has {', '.join(valid)}")


def run():
    run_app(_main)


if __name__ == "__main__":
    run()
