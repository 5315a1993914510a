"""dot_product_attention: the explicit implementation against numpy, and every other
implementation against the explicit one (forward and gradients)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sora_jax.nn import masks
from sora_jax.nn.attention_core import IMPLEMENTATIONS, cached_attention, dot_product_attention, explicit_attention
from sora_jax.nn.fused_attention import CAUSAL_SPLIT_MIN_LENGTH


def numpy_attention(q, k, v, mask=None, bias=None):
    """Loop-per-head reference in float64."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    B, T, N, H = q.shape
    S, K = k.shape[1], k.shape[2]
    out = np.zeros((B, T, N, H))
    for b in range(B):
        for n in range(N):
            kv = n // (N // K)
            logits = q[b, :, n] @ k[b, :, kv].T / np.sqrt(H)
            if bias is not None:
                logits = logits + np.broadcast_to(bias, (B, N, T, S))[b, n]
            allowed = np.ones((T, S), bool) if mask is None else np.broadcast_to(mask, (B, N, T, S))[b, n]
            for t in range(T):
                if not allowed[t].any():
                    continue  # fully masked query row -> zeros
                row = np.where(allowed[t], logits[t], -np.inf)
                p = np.exp(row - row.max())
                out[b, t, n] = (p / p.sum()) @ v[b, :, kv]
    return out


def make_case(name, dtype=jnp.float32, seed=0):
    B, T, N, H = 2, 11, 4, 8
    S, K = T, N
    mask = bias = None
    causal = False
    if name == "cross":
        S = 19
    if name in ("gqa", "gqa_head_mask_key_bias"):
        K = 2
    keys = jax.random.split(jax.random.key(seed), 4)
    if name in ("padding", "cross", "gqa", "fully_masked"):
        lengths = jnp.array([S - 4, S]) if name != "fully_masked" else jnp.array([S - 3, 0])
        mask = masks.key_padding_mask(jnp.arange(S)[None, :] < lengths[:, None])
    if name in ("causal", "gqa"):
        causal = True
    if name == "bias":
        bias = jax.random.normal(keys[3], (1, N, T, S))
    if name == "gqa_head_mask_key_bias":
        # A different mask per head, and a bias that varies only along the keys (shape [B, 1, 1, S]).
        mask = jax.random.bernoulli(keys[3], 0.7, (B, N, T, S))
        bias = jax.random.normal(keys[3], (B, 1, 1, S))
    if name == "segments":
        seg = jnp.array([[1] * 5 + [2] * 4 + [0] * 2, [1] * 11])
        mask = masks.segment_mask(seg)
        causal = True
    q = jax.random.normal(keys[0], (B, T, N, H)).astype(dtype)
    k = jax.random.normal(keys[1], (B, S, K, H)).astype(dtype)
    v = jax.random.normal(keys[2], (B, S, K, H)).astype(dtype)
    return q, k, v, mask, bias, causal


CASES = ("padding", "causal", "cross", "bias", "gqa", "fully_masked", "segments", "gqa_head_mask_key_bias")


@pytest.mark.parametrize("case", CASES)
def test_explicit_matches_numpy(case):
    q, k, v, mask, bias, causal = make_case(case)
    full_mask = masks.combine_masks(mask, masks.causal_mask(q.shape[1], k.shape[1]) if causal else None)
    got = dot_product_attention(q, k, v, mask, bias, is_causal=causal)
    want = numpy_attention(q, k, v, None if full_mask is None else np.asarray(full_mask),
                           None if bias is None else np.asarray(bias))
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("implementation", [i for i in IMPLEMENTATIONS if i != "explicit"])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_implementations_agree_forward_and_gradients(implementation, case, dtype):
    q, k, v, mask, bias, causal = make_case(case, dtype)
    tol = 1e-5 if dtype == jnp.float32 else 3e-2

    def loss(impl, q, k, v, bias):
        out = dot_product_attention(q, k, v, mask, bias, is_causal=causal, implementation=impl, chunk_size=4)
        # A non-trivial cotangent: weights differ per position and channel.
        w = jnp.sin(jnp.arange(out.size, dtype=jnp.float32)).reshape(out.shape)
        return jnp.sum(out.astype(jnp.float32) * w), out

    grad_fn = jax.grad(loss, argnums=(1, 2, 3, 4), has_aux=True)
    (grads_ref, out_ref) = grad_fn("explicit", q, k, v, bias)
    (grads, out) = grad_fn(implementation, q, k, v, bias)
    assert out.dtype == dtype
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(out_ref, np.float32), atol=tol, rtol=tol)
    for name, g, g_ref in zip(("dq", "dk", "dv", "dbias"), grads, grads_ref):
        if g_ref is None:
            continue
        scale = max(1.0, float(jnp.max(jnp.abs(g_ref.astype(jnp.float32)))))
        np.testing.assert_allclose(np.asarray(g, np.float32) / scale, np.asarray(g_ref, np.float32) / scale,
                                   atol=tol * 4, rtol=0, err_msg=name)


def test_fully_masked_rows_are_zero_in_every_implementation():
    q, k, v, mask, bias, causal = make_case("fully_masked")
    for impl in IMPLEMENTATIONS:
        out = dot_product_attention(q, k, v, mask, implementation=impl)
        assert float(jnp.abs(out[1]).max()) == 0.0, impl
        assert float(jnp.abs(out[0]).max()) > 0.0, impl


def test_chunked_handles_chunks_that_do_not_divide_the_length():
    q, k, v, mask, bias, causal = make_case("cross")  # S = 19
    ref = dot_product_attention(q, k, v, mask, implementation="explicit")
    for chunk in (1, 5, 19, 64):
        out = dot_product_attention(q, k, v, mask, implementation="chunked", chunk_size=chunk)
        np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5, err_msg=f"chunk {chunk}")


def _long_causal_case(dtype):
    """Long enough for the causal split, with grouped-query heads and packed segments."""
    B, T, N, K, H = 2, CAUSAL_SPLIT_MIN_LENGTH, 4, 2, 8
    keys = jax.random.split(jax.random.key(3), 3)
    seg = jnp.stack([jnp.repeat(jnp.arange(1, 5), T // 4), jnp.where(jnp.arange(T) < T - 9, 1, 0)])
    q = jax.random.normal(keys[0], (B, T, N, H)).astype(dtype)
    k, v = (jax.random.normal(key, (B, T, K, H)).astype(dtype) for key in keys[1:])
    return q, k, v, masks.segment_mask(seg), None, True


@pytest.mark.parametrize("case", [c for c in CASES if "bias" not in c] + ["long_causal"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_explicit_fast_path_equals_the_reference_forward_and_gradients(case, dtype):
    """Without bias or dropout, "explicit" runs fused_attention (hand-written backward, causal
    split): it must give the reference einsum implementation's outputs and gradients."""
    q, k, v, mask, _, causal = _long_causal_case(dtype) if case == "long_causal" else make_case(case, dtype)
    full_mask = masks.combine_masks(mask, masks.causal_mask(q.shape[1], k.shape[1]) if causal else None)
    tol = 1e-5 if dtype == jnp.float32 else 3e-2
    w = jnp.sin(jnp.arange(q.size, dtype=jnp.float32)).reshape(q.shape)

    def loss(fast, q, k, v):
        if fast:
            out = dot_product_attention(q, k, v, mask, is_causal=causal)
        else:
            out = explicit_attention(q, k, v, full_mask, scale=q.shape[-1] ** -0.5)
        return jnp.sum(out.astype(jnp.float32) * w), out

    grad_fn = jax.jit(jax.grad(loss, argnums=(1, 2, 3), has_aux=True), static_argnums=0)
    grads_ref, out_ref = grad_fn(False, q, k, v)
    grads, out = grad_fn(True, q, k, v)
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(out_ref, np.float32), atol=tol, rtol=tol)
    for name, g, g_ref in zip(("dq", "dk", "dv"), grads, grads_ref):
        scale = max(1.0, float(jnp.max(jnp.abs(g_ref.astype(jnp.float32)))))
        np.testing.assert_allclose(np.asarray(g, np.float32) / scale, np.asarray(g_ref, np.float32) / scale,
                                   atol=tol * 4, rtol=0, err_msg=name)
    if case == "fully_masked":  # the row with no key has zero output and passes no gradient
        assert not np.any(np.asarray(out[1], np.float32)) and not np.any(np.asarray(grads[0][1], np.float32))


def _scalar_products(jaxpr):
    """Output shapes of every multiplication by a scalar in a jaxpr, sub-jaxprs included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "mul" and any(getattr(x.aval, "shape", None) == () for x in eqn.invars):
            found.append(eqn.outvars[0].aval.shape)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    found += _scalar_products(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    found += _scalar_products(sub)
    return found


def test_fast_path_scales_q_not_the_logits_in_either_pass():
    """The property part of the train step's speed rests on, checked without timing: XLA:CPU hands
    a scalar multiply of [T, S] logits (or their gradient) to its matmul fusions as a materialised
    full-size broadcast. The fast path multiplies q by the scale instead, so no [.., T, S] tensor is
    ever multiplied by a scalar, forward or backward (causal split included)."""
    B, T, N, H = 2, CAUSAL_SPLIT_MIN_LENGTH, 2, 16
    q, k, v = (jax.random.normal(key, (B, T, N, H)) for key in jax.random.split(jax.random.key(0), 3))

    w = jnp.sin(jnp.arange(q.size, dtype=jnp.float32)).reshape(q.shape)

    def loss(q, k, v):
        return jnp.sum(dot_product_attention(q, k, v, is_causal=True) * w)

    shapes = _scalar_products(jax.make_jaxpr(jax.value_and_grad(loss, argnums=(0, 1, 2)))(q, k, v).jaxpr)
    assert (B, T, N, H) in shapes  # q * scale, and its transpose in the backward
    logits_shaped = [s for s in shapes if len(s) == 4 and s[-1] in (T, T // 2) and s[-2] in (T, T // 2)]
    assert not logits_shaped, f"scalar multiplies of logits-shaped tensors: {logits_shaped}"


def _compiled_temp_bytes(fn, T):
    spec = jax.ShapeDtypeStruct((1, T, 4, 32), jnp.float32)
    return jax.jit(fn).lower(spec, spec, spec).compile().memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("with_grad", [False, True])
def test_chunked_memory_grows_linearly_while_explicit_grows_quadratically(with_grad):
    def attention(impl):
        def f(q, k, v):
            return dot_product_attention(q, k, v, is_causal=True, implementation=impl, chunk_size=256)
        if with_grad:
            return jax.grad(lambda q, k, v: f(q, k, v).sum(), argnums=(0, 1, 2))
        return f

    chunked = [_compiled_temp_bytes(attention("chunked"), T) for T in (1024, 4096)]
    explicit = [_compiled_temp_bytes(attention("explicit"), T) for T in (1024, 4096)]
    assert chunked[1] / chunked[0] < 5.0, chunked  # 4x the length -> about 4x the memory
    assert explicit[1] / explicit[0] > 12.0, explicit  # -> about 16x
    assert chunked[1] < explicit[1] / 4


def test_dropout_is_seeded_and_only_in_the_explicit_implementation():
    q, k, v, mask, bias, causal = make_case("padding")
    rng = jax.random.key(1)
    kw = dict(dropout_rate=0.5, dropout_rng=rng, deterministic=False)
    a = dot_product_attention(q, k, v, mask, **kw)
    b = dot_product_attention(q, k, v, mask, **kw)
    c = dot_product_attention(q, k, v, mask, dropout_rate=0.5, dropout_rng=jax.random.key(2), deterministic=False)
    clean = dot_product_attention(q, k, v, mask)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(a), np.asarray(c))
    assert not np.allclose(np.asarray(a), np.asarray(clean))
    # deterministic=True switches dropout off.
    np.testing.assert_array_equal(np.asarray(dot_product_attention(q, k, v, mask, dropout_rate=0.5)),
                                  np.asarray(clean))
    for impl in ("jax", "chunked"):
        with pytest.raises(ValueError, match="explicit"):
            dot_product_attention(q, k, v, mask, implementation=impl, **kw)


def test_bad_shapes_are_reported():
    q = jnp.zeros((1, 4, 3, 8))
    k = jnp.zeros((1, 4, 2, 8))
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        dot_product_attention(q, k, k)
    with pytest.raises(ValueError, match="4-D"):
        dot_product_attention(q, q, q, mask=jnp.ones((4, 4), bool))
    with pytest.raises(ValueError, match="unknown attention implementation"):
        dot_product_attention(q, q, q, implementation="flash")


@pytest.mark.parametrize("kv_heads,with_mask_and_bias,new_tokens", [(4, False, 1), (2, True, 1), (2, True, 3)])
def test_cached_attention_equals_numpy_over_the_updated_cache(kv_heads, with_mask_and_bias, new_tokens):
    """Decode attention reads the cache as it was before the new tokens (whatever lies at and past
    cache_index is ignored) plus the new keys: the same as attending causally over the cache with
    the new keys written in."""
    B, N, H, L, T, index = 2, 4, 8, 13, new_tokens, 6
    keys = jax.random.split(jax.random.key(3), 7)
    q = jax.random.normal(keys[0], (B, T, N, H))
    k_new, v_new = (jax.random.normal(kk, (B, T, kv_heads, H)) for kk in keys[1:3])
    cache_k, cache_v = (jax.random.normal(kk, (B, L, kv_heads, H)) * 50 for kk in keys[3:5])  # garbage past index
    mask = bias = None
    if with_mask_and_bias:
        mask = jax.random.bernoulli(keys[5], 0.8, (B, N, T, L))
        bias = jax.random.normal(keys[6], (B, 1, 1, L))
    updated_k = jax.lax.dynamic_update_slice(cache_k, k_new, (0, index, 0, 0))
    updated_v = jax.lax.dynamic_update_slice(cache_v, v_new, (0, index, 0, 0))
    visible = masks.combine_masks(mask, masks.causal_mask(T, L, offset=index))
    want = numpy_attention(q, updated_k, updated_v, visible, bias)

    got = cached_attention(q, k_new, v_new, cache_k.transpose(0, 2, 1, 3), cache_v.transpose(0, 2, 3, 1), index,
                           mask, bias, scale=H ** -0.5, k_layout="bksh", v_layout="bkhs")
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-5, rtol=2e-5)
