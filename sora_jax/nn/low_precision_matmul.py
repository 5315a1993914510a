"""A 2-D matmul for bfloat16 / float16 compute whose three products (forward, input gradient,
weight gradient) all run on the CPU's fast low-precision path.

XLA:CPU multiplies bfloat16 matrices with AMX / AVX-512 BF16 (~1.9 TFLOP/s on the 2-core test
machine, 5x float32) only when the product accumulates into float32 and the contraction runs over
the left operand's minor axis. Autodiff of a plain bfloat16 dot meets neither condition (bfloat16
outputs; the weight gradient contracts the batch axis, the major one), and those dots run at
~270 GFLOP/s, slower than float32: the 6-layer benchmark LM's bfloat16 train step was 1.3x
slower than its float32 one. Here every product accumulates in float32 and the weight gradient
reads a transposed copy of its narrower operand (a few MB; on CPU only: other backends read
transposed operands at full speed).

The kernel may be kept in a wider dtype (float32 parameters): it is cast to the compute dtype
inside, and its gradient comes back in its own dtype straight from the float32 accumulator,
not rounded through bfloat16 first.

float32 layers that narrow (more inputs than outputs, as an MLP's output projection) come here
too on CPU, for the weight gradient's orientation alone: XLA:CPU's float32 dot computes a
[1536, 384] x^T dy at 144 GFLOP/s and the [384, 1536] dy^T x at 186 (one core), so the wide
axis is made the product's minor one and the result transposed (a copy of 2 MB). Their
operands are not copied: float32 dots read transposed operands at full speed.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

LOW_PRECISION_DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def is_low_precision(dtype) -> bool:
    return jnp.dtype(dtype) in LOW_PRECISION_DTYPES


def _dot(a, b, a_axis: int, b_axis: int):
    return jax.lax.dot_general(a, b, (((a_axis,), (b_axis,)), ((), ())), preferred_element_type=jnp.float32)


def _transposed_copy(a_MxP):
    """a^T [P, M] as an array of its own. On CPU a plain transpose is folded into the
    dot as a contraction over the left operand's major axis, and XLA:CPU then runs the dot in
    float32 (its bfloat16 kernels need the contraction on the minor axis): 4x slower. Two
    concatenated halves are not folded (an optimization barrier is dropped before that choice)."""
    half = a_MxP.shape[1] // 2
    if jax.default_backend() != "cpu" or half == 0:
        return a_MxP.T
    return jnp.concatenate([a_MxP[:, :half].T, a_MxP[:, half:].T], axis=0)


def _weight_gradient(a_MxP, b_MxQ):
    """a^T b [P, Q], contracting the long M axis, computed with the wider of P and Q as the
    product's minor axis. In low precision the narrower operand is first transposed (copied)."""
    low = is_low_precision(a_MxP.dtype)
    if a_MxP.shape[1] <= b_MxQ.shape[1]:
        return _dot(_transposed_copy(a_MxP), b_MxQ, 1, 0) if low else _dot(a_MxP, b_MxQ, 0, 0)
    # The [Q, P] product's transpose is a copy too: folded into the dot, it would contract both
    # operands' major axes (float32: the slow orientation again; bfloat16: XLA:CPU fails to run
    # that dot at all).
    product_QxP = _dot(_transposed_copy(b_MxQ), a_MxP, 1, 0) if low else _dot(b_MxQ, a_MxP, 0, 0)
    return _transposed_copy(product_QxP)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def low_precision_matmul(x_MxK, kernel, bias_N, transpose_kernel: bool, out_dtype):
    """x [M, K] . kernel [K, N] (transpose_kernel: kernel is [N, K]) + bias [N] (or None) -> [M, N]
    in out_dtype, computed in x's dtype with float32 accumulation; the bias is added in float32."""
    return _forward(x_MxK, kernel, bias_N, transpose_kernel, out_dtype)[0]


def _forward(x_MxK, kernel, bias_N, transpose_kernel, out_dtype):
    w = kernel.astype(x_MxK.dtype)
    y = _dot(x_MxK, w, 1, 1 if transpose_kernel else 0)
    if bias_N is not None:
        y = y + bias_N.astype(jnp.float32)[None, :]
    return y.astype(out_dtype), (x_MxK, kernel, bias_N)


def _backward(transpose_kernel, out_dtype, residuals, d_y):
    x_MxK, kernel, bias_N = residuals
    w = kernel.astype(x_MxK.dtype)
    # The bias gradient from d_y as given (float32 logits stay float32), before it is rounded.
    d_bias = None if bias_N is None else jnp.sum(d_y.astype(jnp.float32), axis=0).astype(bias_N.dtype)
    d_y = d_y.astype(x_MxK.dtype)
    d_x = _dot(d_y, w, 1, 0 if transpose_kernel else 1).astype(x_MxK.dtype)
    if transpose_kernel:  # d_kernel [N, K] = d_y^T x
        d_kernel = _weight_gradient(d_y, x_MxK)
    else:  # d_kernel [K, N] = x^T d_y
        d_kernel = _weight_gradient(x_MxK, d_y)
    return d_x, d_kernel.astype(kernel.dtype), d_bias


low_precision_matmul.defvjp(_forward, _backward)
