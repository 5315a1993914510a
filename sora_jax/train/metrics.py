"""Where metrics go: DIR/metrics.jsonl (one JSON object per logged step) and TensorBoard under
DIR/tb/. Only process 0 writes."""

from __future__ import annotations

import json
import logging
import math
import os
import time

from sora_jax.data.schema import TASKS

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.jsonl"


def summarize(raw: dict, prefix: str = "") -> dict:
    """Device metrics (already on the host, summed over the logged steps) -> flat floats:
    per-task mean losses ("loss/caption"), perplexity for decoder tasks, accuracy when counted."""
    out = {}
    sums, counts = raw.get("task_loss_sum"), raw.get("task_count")
    if sums is not None:
        for i, task in enumerate(TASKS):
            if counts[i] > 0:
                mean = float(sums[i] / counts[i])
                out[f"{prefix}loss/{task}"] = mean
                if task != "classify":
                    out[f"{prefix}perplexity/{task}"] = math.exp(min(mean, 50.0))
    correct, examples = raw.get("correct"), raw.get("task_examples")
    if correct is not None:
        for i, task in enumerate(TASKS):
            if examples[i] > 0 and task != "lm":  # a whole row of running text exactly right says nothing
                out[f"{prefix}accuracy/{task}"] = float(correct[i] / examples[i])
    for key, value in raw.items():
        if key not in ("task_loss_sum", "task_count", "correct", "task_examples"):
            out[prefix + key] = float(value)
    return out


class MetricWriter:
    def __init__(self, workdir: str, enabled: bool = True, tensorboard: bool = True, resumed_step: int = 0):
        """resumed_step: the step the run continues from (0 for a fresh start); TensorBoard drops
        what an interrupted attempt logged after it (a purge event), as truncate_after does for
        metrics.jsonl."""
        self.enabled = enabled
        self.path = os.path.join(workdir, METRICS_FILE)
        self._tb = None
        if enabled and tensorboard:
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(os.path.join(workdir, "tb"), purge_step=resumed_step + 1)

    def truncate_after(self, step: int):
        """On resume from `step`: drop training lines the interrupted run wrote after it, so the
        file reads as one uninterrupted run (rewritten atomically). A line that is not JSON (a write
        cut short by a kill) is dropped with a warning."""
        if not self.enabled or not os.path.exists(self.path):
            return
        with open(self.path) as f:
            text = f.read()
        keep, torn = [], []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                torn.append(number)
                continue
            if record.get("step", 0) <= step:
                keep.append(line + "\n")
        if torn:
            log.warning("%s: dropped %d line(s) that are not JSON (line %s), left by a write cut short",
                        self.path, len(torn), ", ".join(map(str, torn)))
        if "".join(keep) != text:
            temp = self.path + ".tmp"
            with open(temp, "w") as f:
                f.writelines(keep)
            os.replace(temp, self.path)

    def has_record(self, step: int, split: str) -> bool:
        """Whether metrics.jsonl holds a `split` record at `step` (e.g. a finished run's final eval)."""
        if not os.path.exists(self.path):
            return False
        with open(self.path) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("step") == step and record.get("split") == split:
                    return True
        return False

    def write(self, step: int, values: dict, split: str = "train"):
        if not self.enabled:
            return
        record = {"step": int(step), "split": split, "wall_time": time.time(), **values}  # Unix time, as TensorBoard
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(f"{split}/{key}", value, step)

    def image(self, tag: str, pixels_HxWxC, step: int):
        """A uint8 image into TensorBoard."""
        if self._tb is not None:
            self._tb.add_image(tag, pixels_HxWxC, step, dataformats="HWC")

    def close(self):
        if self._tb is not None:
            self._tb.close()
