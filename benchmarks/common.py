"""What the benchmarks share: the in-process matmul roofline and the JSON result file."""

from __future__ import annotations

import json
import os
import statistics
import time

import jax
import jax.numpy as jnp


def matmul_timer(n=2048, dtype=jnp.float32):
    """A function that times `repeats` plain n x n jnp.dot products here and now and returns their
    FLOP/s: the practical roofline, compiled once so a benchmark can re-measure it next to each of
    its own timings. In bfloat16 the product accumulates in float32 (preferred_element_type), the
    form XLA:CPU runs on its fast bfloat16 kernels (a bfloat16-output dot there runs ~5x slower)."""
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    f = jax.jit(lambda x: jnp.dot(x, x, preferred_element_type=jnp.float32))
    f(a).block_until_ready()

    def flops_per_s(repeats=10):
        start = time.perf_counter()
        for _ in range(repeats):
            f(a).block_until_ready()
        return 2 * n ** 3 * repeats / (time.perf_counter() - start)
    return flops_per_s


def matmul_flops_per_s(n=2048, repeats=10, rounds=5, dtype=jnp.float32):
    """The median of `rounds` matmul_timer timings (one timing swung by 15% on the shared machine)."""
    timer = matmul_timer(n, dtype)
    return statistics.median(timer(repeats) for _ in range(rounds))


def results_path(name: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"{name}.json")


def report(roofline, rows, columns, path, extra=None):
    """Prints the roofline and a table (columns: (header, width, row -> text)), writes JSON."""
    print(f"plain f32 matmul: {roofline / 1e9:.0f} GFLOP/s ({jax.devices()[0].platform}, {os.cpu_count()} cpus)")
    print(" ".join(f"{header:>{width}}" for header, width, _ in columns))
    for row in rows:
        print(" ".join(f"{cell(row):>{width}}" for _, width, cell in columns))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"matmul_gflops_per_s": roofline / 1e9, "jax": jax.__version__, **(extra or {}), "rows": rows},
                  f, indent=2)
    print(f"wrote {path}")
