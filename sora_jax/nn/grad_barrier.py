"""An identity whose gradient XLA computes once instead of re-deriving it in every consumer.

In the backward pass of a stack of residual layers, the gradient of the residual stream is a
sum over every layer above. XLA:CPU fuses that elementwise sum into each of its consumers (the
norm's backward, the transposed copy feeding a weight-gradient matmul, ...), so every layer
recomputes the sums of all the layers above it: work quadratic in depth, 10% of a train step
of nanoGPT's 4-layer CPU model. An optimization barrier does not stop it (XLA:CPU drops
barriers before fusion); a conditional does: its result is a buffer, computed once.

The conditional's predicate reads one element of the gradient, which is a collective when the
gradient is sharded, so "auto" uses it only where it was measured to pay: one CPU device.
"""

from __future__ import annotations

import jax

MODES = ("auto", "on", "off")


def enabled(mode: str) -> bool:
    """Whether `mode` ("auto", "on", "off") puts the barrier in: "auto" on a single CPU device."""
    if mode not in MODES:
        raise ValueError(f"residual_grad_barrier must be one of {MODES}, got {mode!r}")
    if mode == "auto":
        return jax.default_backend() == "cpu" and jax.device_count() == 1
    return mode == "on"


@jax.custom_vjp
def grad_barrier(x):
    """Identity; its cotangent is materialized once (see the module docstring)."""
    return x


def _forward(x):
    return x, None


def _backward(_, g):
    first = g.reshape(-1)[0]
    # Always true except for NaN; XLA cannot fold it, so the conditional survives to the end.
    return (jax.lax.cond(first == first, lambda t: t, lambda t: t + 0, g),)


grad_barrier.defvjp(_forward, _backward)
