"""How long a training loop is blocked by an asynchronous checkpoint save of a sharded train
state, with the Checkpointer's array handler against Orbax's default one.

    python benchmarks/checkpoint_save.py        # 8 fake CPU devices; the train_step benchmark's
                                                # target LM (6 layers, width 384, AdamW state)

Orbax's default handler saves replicated arrays replica-parallel: every replica writes a slice,
each cut by a slice program compiled per array shape, which costs most on the first save. The
Checkpointer does that only across processes and for slices of >= 1 MiB (sora_jax/train/checkpoint.py).
For each mesh layout, after one untimed save, the state is saved twice by each handler (the second
after the first finished); `blocked`
is the time save() holds the caller, `done` until the files are final. Ratios (Orbax's default
over ours) come from the same process. Prints a table and writes JSON
(benchmarks/results/checkpoint_save.json).
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import grain  # noqa: E402
import jax  # noqa: E402
from common import matmul_flops_per_s, report, results_path  # noqa: E402
from train_step import lm_backend  # noqa: E402

from sora_jax.train import checkpoint  # noqa: E402

LAYOUTS = {"1 device": (1, 1, 1), "data 8 (replicated)": (8, 1, 1), "fsdp 8": (1, 8, 1), "data 2 x fsdp 4": (2, 4, 1)}
COLUMNS = [("layout", 20, lambda r: r["layout"]), ("handler", 14, lambda r: r["handler"]),
           ("arrays", 7, lambda r: str(r["arrays"])), ("MB", 6, lambda r: f"{r['megabytes']:.0f}"),
           ("1st blocked s", 13, lambda r: f"{r['blocked_s'][0]:.2f}"),
           ("2nd blocked s", 13, lambda r: f"{r['blocked_s'][1]:.2f}"),
           ("1st done s", 10, lambda r: f"{r['done_s'][0]:.2f}"), ("2nd done s", 10, lambda r: f"{r['done_s'][1]:.2f}"),
           ("1st vs ours", 11, lambda r: f"{r['first_blocked_over_ours']:.1f}x")]


def save_twice(state, orbax_default: bool):
    """(blocked seconds, seconds until final) for two saves in a fresh directory."""
    saved_min = checkpoint.MIN_REPLICA_SLICE_BYTES
    if orbax_default:  # Orbax's own default: replica-parallel for every array, however small
        checkpoint.MIN_REPLICA_SLICE_BYTES = 0
    try:
        with tempfile.TemporaryDirectory() as d:
            ckpt = checkpoint.Checkpointer(d, replica_parallel=True if orbax_default else None)
            blocked, done = [], []
            for step in (1, 2):
                start = time.perf_counter()
                ckpt.save(step, state, iter(grain.MapDataset.range(4).to_iter_dataset()), {})
                blocked.append(time.perf_counter() - start)
                ckpt.manager.wait_until_finished()
                done.append(time.perf_counter() - start)
            ckpt.close()
    finally:
        checkpoint.MIN_REPLICA_SLICE_BYTES = saved_min
    return blocked, done


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="target_6L_384")
    parser.add_argument("--out", default=results_path("checkpoint_save"))
    args = parser.parse_args()
    rows = []
    for layout, shape in LAYOUTS.items():
        backend, _ = lm_backend(args.model, mesh_shape=shape)
        state = backend.init(jax.random.key(0))
        leaves = jax.tree.leaves(state)
        size = dict(layout=layout, arrays=len(leaves), megabytes=sum(x.nbytes for x in leaves) / 1e6)
        # An untimed save first: a state's first save also sets Orbax and TensorStore up for it,
        # whichever handler; ours compiles no slice programs that Orbax's default could reuse.
        save_twice(state, False)
        ours = dict(size, handler="sora_jax", **dict(zip(("blocked_s", "done_s"), save_twice(state, False))))
        default = dict(size, handler="orbax default", **dict(zip(("blocked_s", "done_s"), save_twice(state, True))))
        for row in (ours, default):
            row["first_blocked_over_ours"] = row["blocked_s"][0] / ours["blocked_s"][0]
        rows += [ours, default]
    report(matmul_flops_per_s(), rows, COLUMNS, args.out, extra={"model": args.model, "devices": jax.device_count()})


if __name__ == "__main__":
    main()
