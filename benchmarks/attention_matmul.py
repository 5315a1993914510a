"""The attention's batched matmuls on CPU: each of the target LM's attention einsums (batch 16,
6 heads of 64, sequence 256, the causal halves of sora_jax/nn/fused_attention.py) timed alone,
as a fraction of the plain 2048 x 2048 matmul roofline measured in the same process.

    python benchmarks/attention_matmul.py                 # one CPU device
    python benchmarks/attention_matmul.py --devices=2     # the batch split over 2 CPU devices
    taskset -c 0 python benchmarks/attention_matmul.py    # one core
    python benchmarks/attention_matmul.py --groups=16     # 16 independent dots of one example each

Why: in the train-step benchmark's target model these matmuls take ~370 ms of a ~2.2 s float32
step at well under the roofline (README, "Train step"). Comparing the three commands shows
whether XLA:CPU spreads one batched matmul over the cores: on the 2-core machines of
2026-12-01 one device and one core time the same, and two devices are ~1.6x faster.
--groups=G runs each einsum as G independent dots (one batch slice each, passed as separate
arrays) in one program: XLA:CPU's thunk executor hands ready thunks to its other threads only
when more than 8 are ready at once, so G > 8 shows whether independent dots fill both cores.
Prints a table and writes JSON (benchmarks/results/attention_matmul[_Ndevices][_Ggroups].json).
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
           ("of roofline", 11, lambda r: f"{r['fraction_of_matmul_roofline']:.2f}"),
           ("cpu/wall", 8, lambda r: f"{r['cpu_per_wall']:.2f}")]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1, help="CPU devices to split the batch over")
    parser.add_argument("--groups", type=int, default=1, help="independent dots per einsum, one batch slice each")
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
    if args.groups < 1 or B % args.groups or (args.groups > 1 and args.devices > 1):
        raise SystemExit(f"--groups: need a divisor of the batch {B}, on one device")
    sharding = NamedSharding(Mesh(np.array(jax.devices()[:args.devices]), ("batch",)), PartitionSpec("batch"))
    roofline = matmul_flops_per_s()
    rows = []
    for name, (equation, lhs_shape, rhs_shape) in EINSUMS.items():
        lhs, rhs = (jax.device_put(jax.random.normal(jax.random.key(i), s), sharding)
                    for i, s in enumerate((lhs_shape, rhs_shape)))
        if args.groups == 1:
            f = jax.jit(lambda a, b, eq=equation: jnp.einsum(eq, a, b), out_shardings=sharding)
        else:  # lists of slices: the program gets G independent dots and no slicing of its own
            lhs, rhs = (jnp.split(x, args.groups) for x in (lhs, rhs))
            f = jax.jit(lambda a, b, eq=equation: [jnp.einsum(eq, x, y) for x, y in zip(a, b)])
        out_size = sum(x.size for x in jax.tree.leaves(jax.block_until_ready(f(lhs, rhs))))
        contracted = [size for size, axis in zip(lhs_shape, equation.split(",")[0]) if axis not in equation[-4:]]
        flops = 2 * out_size * int(np.prod(contracted))
        times, cpu_times = [], []
        for _ in range(args.repeats):
            start, cpu_start = time.perf_counter(), time.process_time()
            jax.block_until_ready(f(lhs, rhs))
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
        seconds = statistics.median(times)
        rows.append({"name": name, "equation": equation, "lhs": list(lhs_shape), "rhs": list(rhs_shape),
                     "ms": 1e3 * seconds, "gflops_per_s": flops / seconds / 1e9,
                     "cpu_per_wall": statistics.median(c / t for c, t in zip(cpu_times, times)),
                     "fraction_of_matmul_roofline": flops / seconds / roofline})
    suffix = ("" if args.devices == 1 else f"_{args.devices}devices") + ("" if args.groups == 1 else f"_{args.groups}groups")
    report(roofline, rows, COLUMNS, args.out or results_path(f"attention_matmul{suffix}"),
           extra={"devices": args.devices, "groups": args.groups, "cpus": len(os.sched_getaffinity(0))})


if __name__ == "__main__":
    main()
