"""The run report: curves, the metrics table and what the model does, in one page.

    python -m sora_jax.report --workdir=runs/demo [--step=N]

writes DIR/report.html (self-contained: images embedded), DIR/report.md and DIR/report/*.png:
training-loss and eval curves, the newest eval's metrics (exact match, BLEU / ROUGE, accuracy,
perplexity, the generator's conditional accuracy and FID), validation scenes with the model's
captions, answers and classes, text-to-image grids for the fixed prompts, inpainting panels, a
Shakespeare continuation and a chat transcript, each for the tasks the run was trained on.
"""

from __future__ import annotations

import os

from absl import flags
from absl import logging as absl_logging

from sora_jax.cli import fail, run_app

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's directory.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
_SCENES = flags.DEFINE_integer("scenes", 8, "Validation scenes shown with the model's outputs.")
flags.mark_flags_as_required(["workdir"])

# Eval curves drawn when present: the quality measures, not the losses (those have their own plot).
_CURVE_SUFFIXES = ("/exact_match", "/accuracy/classify", "gan/cond_accuracy")


def make_report(workdir: str, step: int | None = None, scenes: int = 8) -> tuple[str, str]:
    from sora_jax.infer.run import load_run
    from sora_jax.models.params import count_parameters
    from sora_jax.reporting import plots, render, showcase

    run = load_run(workdir, step)
    rows = plots.read_metrics(workdir)
    evals = [r for r in rows if r.get("split") == "eval" and r["step"] <= run.step]
    last_eval = evals[-1] if evals else {}
    figures = []
    loss = plots.loss_curves([r for r in rows if r["step"] <= run.step])
    if loss:
        figures.append(render.Figure("loss.png", loss, "Training loss"))
    curve_keys = sorted({k for r in evals for k in r if k.endswith(_CURVE_SUFFIXES)})
    curves = plots.eval_curves(evals, curve_keys)
    if curves:
        figures.append(render.Figure("eval.png", curves, "Evaluation metrics"))
    show = showcase.build(run, workdir, num_scenes=scenes)
    params = count_parameters(run.state.params)["total"]
    notes = [f"Run {os.path.abspath(workdir)}, checkpoint step {run.step} of {run.config.train.num_steps}; "
             f"{params / 1e6:.2f}M parameters in the Sora model"
             + (f" plus the image generator" if run.gan is not None else "") + ".",
             f"Metrics from the evaluation at step {last_eval.get('step', '-')}.",
             f"Training curves live in TensorBoard: tensorboard --logdir {os.path.join(workdir, 'tb')} "
             f"(pip install tensorboard)"]
    title = f"Sora report: {os.path.basename(os.path.abspath(workdir))}"
    return render.write(workdir, title, render.metric_rows(last_eval), figures, show, notes)


def _main(argv):
    del argv
    absl_logging.set_verbosity(absl_logging.WARNING)
    from sora_jax.data.errors import DataError
    from sora_jax.models.config import ConfigError
    from sora_jax.train.errors import ConfigurationError
    if _SCENES.value < 0:
        fail(f"--scenes must be >= 0 (0: no scenes), got {_SCENES.value}")
    try:
        md, page = make_report(_WORKDIR.value, _STEP.value, _SCENES.value)
    except (ConfigurationError, ConfigError, DataError) as e:
        fail(str(e))
    print(f"report: {page}\n        {md}")
    print(f"open it in a browser (file://{os.path.abspath(page)}); curves in TensorBoard: "
          f"tensorboard --logdir {os.path.join(_WORKDIR.value, 'tb')}")


def run():
    run_app(_main)


if __name__ == "__main__":
    run()
