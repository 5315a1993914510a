"""Data-loader throughput: examples per second for each task on the bundled data, in one
process, read inline, with a prefetch thread, and with worker processes.

    python benchmarks/data_loader.py                  # all tasks, workers 0 and 2
    python benchmarks/data_loader.py --batches=50 --workers=0,2,4

Also reports the consuming process's CPU time per batch: what the loader takes from the
training process. Prints a table and writes JSON (default benchmarks/results/data_loader.json).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import ml_collections

from sora_jax.data import loader, pipeline
from sora_jax.data.config import data_config
from sora_jax.data.tokenizers import ByteTokenizer

TASKS = [("shapes", "caption"), ("shapes", "vqa"), ("shapes", "classify"), ("shapes", "t2i"),
         ("shapes", "inpaint"), ("digits", "caption"), ("shakespeare", "lm"), ("chat", "seq2seq"), ("mixture", "")]


def config(name, task, batch_size, workers, prefetch):
    cfg = ml_collections.ConfigDict({"seed": 0, "data": data_config()})
    d = cfg.data
    d.name, d.task, d.batch_size, d.num_workers, d.prefetch_batches = name, task or "caption", batch_size, workers, prefetch
    if name == "mixture":
        d.mixture = ml_collections.ConfigDict({
            "caption": {"dataset": "shapes", "task": "caption", "weight": 1.0},
            "vqa": {"dataset": "shapes", "task": "vqa", "weight": 1.0},
            "t2i": {"dataset": "shapes", "task": "t2i", "weight": 1.0},
            "lm": {"dataset": "shakespeare", "task": "lm", "weight": 1.0},
            "chat": {"dataset": "chat", "task": "seq2seq", "weight": 1.0}})
    return cfg


def measure(cfg, batches, warmup=3):
    it = iter(loader.train_dataset(cfg, ByteTokenizer()))
    for _ in range(warmup):  # worker start-up and first reads are not steady state
        next(it)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        batch = next(it)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    pipeline.close_training_iterator(it)  # stops this mode's workers before the next mode starts
    size = cfg.data.batch_size
    return {"examples_per_s": batches * size / wall, "ms_per_batch": 1e3 * wall / batches,
            "consumer_cpu_ms_per_batch": 1e3 * cpu / batches}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--workers", default="0,2")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "data_loader.json"))
    args = parser.parse_args()
    modes = [("inline", 0, 0), ("thread prefetch", 0, 2)] + [
        (f"{w} workers", w, 0) for w in map(int, args.workers.split(",")) if w > 0]
    rows = []
    print(f"{'dataset/task':<20} {'mode':<16} {'examples/s':>11} {'ms/batch':>9} {'consumer cpu ms/batch':>22}")
    for name, task in TASKS:
        for mode, workers, prefetch in modes:
            r = measure(config(name, task, args.batch_size, workers, prefetch), args.batches)
            label = f"{name}/{task}" if task else name
            rows.append({"dataset": name, "task": task, "mode": mode, **r})
            print(f"{label:<20} {mode:<16} {r['examples_per_s']:>11.0f} {r['ms_per_batch']:>9.1f} "
                  f"{r['consumer_cpu_ms_per_batch']:>22.1f}", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"batch_size": args.batch_size, "cpus": os.cpu_count(), "rows": rows}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
