"""Loss and eval curves from a run's metrics.jsonl, as PNG bytes (matplotlib, no display needed)."""

from __future__ import annotations

import io
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")  # files only: no display on a training machine
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(workdir: str) -> list[dict]:
    """The records of metrics.jsonl; lines that are not JSON (one being written by a live run, or
    cut short by a kill) are left out and counted on stderr."""
    path = os.path.join(workdir, "metrics.jsonl")
    rows, bad = [], []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    bad.append(number)
    if bad:
        print(f"warning: {path}: left out {len(bad)} line(s) that are not JSON (line {', '.join(map(str, bad))})",
              file=sys.stderr)
    return rows


def _series(rows, split, key):
    points = [(r["step"], r[key]) for r in rows if r.get("split") == split and isinstance(r.get(key), (int, float))]
    return [p[0] for p in points], [p[1] for p in points]


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _plot(drawn, title, ylabel, *, log=False, line_kwargs=lambda key: {}) -> bytes | None:
    """drawn: (label key, steps, values) per curve; curves without points are left out."""
    drawn = [d for d in drawn if d[1]]
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, steps, values in drawn:
        ax.plot(steps, values, **line_kwargs(key))
    ax.set(xlabel="step", ylabel=ylabel, title=title)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return _png(fig)


def loss_curves(rows) -> bytes | None:
    """Training losses against step: the text loss (total and per task) and the image
    generator's and discriminator's. A curve that is zero throughout (the text loss of a run
    without text targets) is left out; log scale when every value is positive."""
    train = {k for r in rows if r.get("split") == "train" for k in r}
    keys = (["loss"] + sorted(k for k in train if k.startswith("loss/"))
            + sorted(k for k in train if k.startswith("gan/") and k.endswith("_loss")))
    drawn = [(k, *_series(rows, "train", k)) for k in keys]
    drawn = [d for d in drawn if any(v != 0 for v in d[2])]
    positive = all(v > 0 for _, _, values in drawn for v in values)
    return _plot(drawn, "Training loss", "training loss", log=positive,
                 line_kwargs=lambda k: dict(label=_LOSS_LABELS.get(k, k.replace("loss/", "")),
                                            linewidth=2.2 if k == "loss" else 1.2))


_LOSS_LABELS = {"gan/g_loss": "image generator", "gan/d_loss": "discriminator"}


def eval_curves(rows, keys) -> bytes | None:
    """The chosen eval metrics against step (one marker per eval)."""
    return _plot([(k, *_series(rows, "eval", k)) for k in keys], "Evaluation", "value",
                 line_kwargs=lambda k: dict(label=k, marker="o"))
