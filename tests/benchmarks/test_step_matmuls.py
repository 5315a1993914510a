"""benchmarks/step_matmuls.py finds every matrix product a train step performs (forward and
backward, inside jit, custom_vjp and scan) and counts their FLOPs as a naive einsum would."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "benchmarks"))
import step_matmuls  # noqa: E402


@jax.custom_vjp
def logits(q, k):
    return jnp.einsum("bth,bsh->bts", q, k)


def _logits_fwd(q, k):
    return logits(q, k), (q, k)


def _logits_bwd(residuals, d_logits):  # as fused_attention's: a hand-written backward pass
    q, k = residuals
    return jnp.einsum("bts,bsh->bth", d_logits, k), jnp.einsum("bts,bth->bsh", d_logits, q)


logits.defvjp(_logits_fwd, _logits_bwd)


def layers_loss(ws, x, q, k):
    """Three scanned layers x <- tanh(x @ w), then one batched (attention-like) product q k^T
    with a custom backward pass."""
    x, _ = jax.lax.scan(lambda x, w: (jnp.tanh(x @ w), None), x, ws)
    return jnp.sum(x) + jnp.sum(logits(q, k) ** 2)


def arguments():
    return jnp.ones((3, 4, 4)), jnp.ones((8, 4)), jnp.ones((2, 5, 3)), jnp.ones((2, 7, 3))


def test_the_forward_and_backward_products_are_found_with_their_multiplicity():
    step = jax.jit(jax.grad(layers_loss, argnums=(0, 2)))
    found = {(k[0].shape, k[1].shape, k[2]): n for k, n in step_matmuls.dot_generals(step, *arguments()).items()}
    dense = {dims: n for (_, _, dims), n in found.items() if not dims[1][0]}
    # Per scanned layer: the forward x @ w, dx = dy w^T and dw = x^T dy, each three times.
    assert dense == {(((1,), (0,)), ((), ())): 3, (((1,), (1,)), ((), ())): 3, (((0,), (0,)), ((), ())): 3}
    batched = {(lhs, rhs, dims): n for (lhs, rhs, dims), n in found.items() if dims[1][0]}
    # q k^T forward, and the custom backward's two products: dq = dS k and dk = dS^T q.
    assert batched == {((2, 5, 3), (2, 7, 3), (((2,), (2,)), ((0,), (0,)))): 1,
                       ((2, 5, 7), (2, 7, 3), (((2,), (1,)), ((0,), (0,)))): 1,
                       ((2, 5, 7), (2, 5, 3), (((1,), (1,)), ((0,), (0,)))): 1}


def test_a_cond_counts_its_costliest_branch_and_remat_counts_the_recomputation():
    def fn(x, w, flag):
        cheap = lambda x: x @ w
        costly = lambda x: (x @ w) @ w
        y = jax.lax.cond(flag, costly, cheap, x)
        return jnp.sum(jax.checkpoint(lambda y: jnp.tanh(y @ w))(y))
    products = step_matmuls.dot_generals(jax.grad(fn, argnums=1), jnp.ones((8, 4)), jnp.ones((4, 4)), True)
    forward = sum(n for k, n in products.items() if k[2] == (((1,), (0,)), ((), ())))
    # The costly branch's two products (and, in its backward cond, their gradients), and the
    # checkpointed layer's product twice: once forward, once recomputed for its backward pass.
    assert forward == 2 + 2


def test_flops_are_those_of_a_naive_product():
    step = jax.jit(jax.grad(layers_loss, argnums=(0, 2)))
    products = step_matmuls.dot_generals(step, *arguments())
    total = sum(n * step_matmuls.flops(k) for k, n in products.items())
    dense = 3 * 3 * 2 * 8 * 4 * 4  # three kinds of [8, 4] x [4, 4]-sized product per layer
    batched = 3 * (2 * 2 * 5 * 7 * 3)  # [2, 5, 3] x [2, 7, 3] forward and the two gradients
    assert total == dense + batched


def test_matmul_time_splits_dense_and_batched_products():
    fn = jax.jit(lambda a, b, q, k: (a @ b, jnp.einsum("bth,bsh->bts", q, k)))
    a, b = np.ones((64, 32), np.float32), np.ones((32, 16), np.float32)
    q, k = np.ones((4, 8, 2), np.float32), np.ones((4, 6, 2), np.float32)
    out = step_matmuls.matmul_time(fn, a, b, q, k)
    assert out["products"] == 2
    assert out["dense_flops"] == 2 * 64 * 32 * 16 and out["batched_flops"] == 2 * 4 * 8 * 6 * 2
    assert out["dense_s"] > 0 and out["batched_s"] > 0
