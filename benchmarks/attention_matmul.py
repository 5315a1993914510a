"""The attention's batched matmuls on CPU: each of the target LM's attention einsums (batch 16,
6 heads of 64, sequence 256, the causal halves of sora_jax/nn/fused_attention.py) timed alone,
as a fraction of the plain 2048 x 2048 matmul roofline measured in the same process.

    python benchmarks/attention_matmul.py                 # one CPU device
    python benchmarks/attention_matmul.py --devices=2     # the batch split over 2 CPU devices
    taskset -c 0 python benchmarks/attention_matmul.py    # one core

Why: in the train-step benchmark's target model these matmuls take ~370 ms of a ~2.2 s float32
step at well under the roofline (README, "Train step"). Comparing the three commands shows
whether XLA:CPU spreads one batched matmul over the cores: on the 2-core machines of
2026-12-01 one device and one core time the same, and two devices are ~1.6x faster.
Prints a table and writes JSON (benchmarks/results/attention_matmul[_Ndevices].json).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

B, N, H, T = 16, 6, 64, 256
HALF = T // 2
# name: (einsum, lhs shape, rhs shape); "q" rows are one causal half of the queries.
EINSUMS = {
    "logits q k^T (first half)": ("bnth,bnsh->bnts", (B, N, HALF, H), (B, N, HALF, H)),
    "logits q k^T (second half)": ("bnth,bnsh->bnts", (B, N, HALF, H), (B, N, T, H)),
    "out p v (second half)": ("bnts,bnsh->bnth", (B, N, HALF, T), (B, N, T, H)),
    "d_v p^T d_out (second half)": ("bnts,bnth->bnsh", (B, N, HALF, T), (B, N, HALF, H)),
    "full q k^T (no causal split)": ("bnth,bnsh->bnts", (B, N, T, H), (B, N, T, H)),
}
COLUMNS = [("einsum", 30, lambda r: r["name"]), ("ms", 7, lambda r: f"{r['ms']:.2f}"),
           ("GFLOP/s", 8, lambda r: f"{r['gflops_per_s']:.0f}"),
           ("of roofline", 11, lambda r: f"{r['fraction_of_matmul_roofline']:.2f}")]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1, help="CPU devices to split the batch over")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.devices > 1:  # must precede jax's start
        if "jax" in sys.modules:
            raise SystemExit("--devices: jax is already imported")
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_force_host_platform_device_count={args.devices}")
    import jax
    import jax.numpy as jnp
    import numpy as np
    from common import matmul_flops_per_s, report, results_path
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    if len(jax.devices()) < args.devices or B % args.devices:
        raise SystemExit(f"--devices: need a divisor of the batch {B} and that many devices; jax has {len(jax.devices())}")
    sharding = NamedSharding(Mesh(np.array(jax.devices()[:args.devices]), ("batch",)), PartitionSpec("batch"))
    roofline = matmul_flops_per_s()
    rows = []
    for name, (equation, lhs_shape, rhs_shape) in EINSUMS.items():
        lhs, rhs = (jax.device_put(jax.random.normal(jax.random.key(i), s), sharding)
                    for i, s in enumerate((lhs_shape, rhs_shape)))
        f = jax.jit(lambda a, b, eq=equation: jnp.einsum(eq, a, b), out_shardings=sharding)
        out = jax.block_until_ready(f(lhs, rhs))
        contracted = [size for size, axis in zip(lhs_shape, equation.split(",")[0]) if axis not in equation[-4:]]
        flops = 2 * out.size * int(np.prod(contracted))
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            jax.block_until_ready(f(lhs, rhs))
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        rows.append({"name": name, "equation": equation, "lhs": list(lhs_shape), "rhs": list(rhs_shape),
                     "ms": 1e3 * seconds, "gflops_per_s": flops / seconds / 1e9,
                     "fraction_of_matmul_roofline": flops / seconds / roofline})
    suffix = "" if args.devices == 1 else f"_{args.devices}devices"
    report(roofline, rows, COLUMNS, args.out or results_path(f"attention_matmul{suffix}"),
           extra={"devices": args.devices, "cpus": len(os.sched_getaffinity(0))})


if __name__ == "__main__":
    main()
