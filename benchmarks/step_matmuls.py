"""The matrix products a compiled function performs, each timed alone: how much of a train step
is its matmuls, and how close to the matmul roofline the step could get if nothing else took time.

Walks the function's jaxpr (inside jit, custom_jvp / custom_vjp, remat and scan bodies, a scan's
body counted `length` times, of a cond's branches the one with the most FLOPs, a while loop's body
once: its trip count is not known before it runs) for every dot_general, groups them by operand
shapes, dtypes and dimension numbers, and times one of each group as its own jitted product on
random operands, in this process, on one device (shapes are the global ones: meant for a
single-device step).
"""

from __future__ import annotations

import collections
import time

import jax
import numpy as np
from jax.extend import core as jax_core


def dot_generals(fn, *args):
    """{(lhs aval, rhs aval, dimension_numbers, preferred_element_type): count} for fn(*args)."""

    def walk(jaxpr, times, counts):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                lhs, rhs = (v.aval for v in eqn.invars)
                key = (jax.ShapeDtypeStruct(lhs.shape, lhs.dtype), jax.ShapeDtypeStruct(rhs.shape, rhs.dtype),
                       eqn.params["dimension_numbers"], eqn.params.get("preferred_element_type"))
                counts[key] += times
            elif eqn.primitive.name == "cond":  # one branch runs
                branches = []
                for branch in eqn.params["branches"]:
                    branches.append(collections.Counter())
                    walk(branch.jaxpr, times, branches[-1])
                counts.update(max(branches, key=lambda c: sum(n * flops(k) for k, n in c.items())))
            else:
                inner = times * (eqn.params["length"] if eqn.primitive.name == "scan" else 1)
                for value in eqn.params.values():
                    for sub in value if isinstance(value, (tuple, list)) else (value,):
                        if isinstance(sub, (jax_core.ClosedJaxpr, jax_core.Jaxpr)):
                            walk(getattr(sub, "jaxpr", sub), inner, counts)

    counts = collections.Counter()
    walk(jax.make_jaxpr(fn)(*args).jaxpr, 1, counts)
    return counts


def flops(key) -> int:
    lhs, rhs, ((lhs_contract, _), (lhs_batch, _)), _ = key
    contracted = int(np.prod([lhs.shape[d] for d in lhs_contract]))
    out_lhs = int(np.prod([n for d, n in enumerate(lhs.shape) if d not in lhs_contract and d not in lhs_batch]))
    out_rhs = rhs.size // contracted // max(1, int(np.prod([lhs.shape[d] for d in lhs_batch])))
    return 2 * int(np.prod([lhs.shape[d] for d in lhs_batch])) * out_lhs * out_rhs * contracted


def time_one(key, repeats=5, rounds=3) -> float:
    """Seconds per product: the median over `rounds` of `repeats` back-to-back calls."""
    lhs, rhs, dims, preferred = key
    a = jax.random.normal(jax.random.key(0), lhs.shape, lhs.dtype)
    b = jax.random.normal(jax.random.key(1), rhs.shape, rhs.dtype)
    f = jax.jit(lambda x, y: jax.lax.dot_general(x, y, dims, preferred_element_type=preferred))
    f(a, b).block_until_ready()
    timings = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            f(a, b).block_until_ready()
        timings.append((time.perf_counter() - start) / repeats)
    return float(np.median(timings))


def matmul_time(fn, *args):
    """For one call of fn: its matmuls' isolated seconds and FLOPs, split into "batched" (with batch
    dimensions: attention's per-head products) and "dense" (the rest), and the number of products."""
    out = {"dense_s": 0.0, "batched_s": 0.0, "dense_flops": 0, "batched_flops": 0, "products": 0}
    for key, count in dot_generals(fn, *args).items():
        kind = "batched" if key[2][1][0] else "dense"
        out[f"{kind}_s"] += count * time_one(key)
        out[f"{kind}_flops"] += count * flops(key)
        out["products"] += count
    return out
