"""bfloat16 / float16 matmuls (`low_precision_matmul`, through `matmul_trailing` and Linear)
against float32 references on the same rounded inputs; float32 narrowing layers on CPU against
autodiff; the attention's float32 compute on CPU;
and, on the compiled program, that every product of the layer stays a low-precision dot (the
property the speed rests on, checked without timing anything)."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sora_jax.nn import low_precision_matmul as lpm
from sora_jax.nn.attention import MultiHeadAttention
from sora_jax.nn.fused_attention import fused_attention
from sora_jax.nn.linear import Linear, matmul_trailing

F32 = jnp.float32


def rounded(x, dtype):
    """x rounded to dtype, held in float32: what the low-precision product multiplies."""
    return jnp.asarray(x, dtype).astype(F32)


def reference(x, kernel, bias, transpose_kernel, dtype):
    """The product in float32 (highest precision) of the operands rounded to dtype."""
    w = rounded(kernel, dtype)
    y = jnp.matmul(rounded(x, dtype), w.T if transpose_kernel else w, precision="highest")
    return y if bias is None else y + bias[None, :]


CASES = [(37, 24, 40), (1, 1, 1), (64, 48, 8), (8, 48, 64), (0, 5, 6)]


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("transpose_kernel", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("M,K,N", CASES)
def test_values_and_all_gradients_match_float32_on_rounded_inputs(dtype, transpose_kernel, with_bias, M, K, N):
    rng = np.random.default_rng(M + 7 * K + 13 * N)
    x = jnp.asarray(rng.normal(size=(M, K)), dtype)
    kernel = jnp.asarray(rng.normal(size=(N, K) if transpose_kernel else (K, N)) / np.sqrt(K), F32)
    bias = jnp.asarray(rng.normal(size=(N,)), F32) if with_bias else None
    d_y = jnp.asarray(rng.normal(size=(M, N)), F32)  # float32 cotangent (as for float32 logits)

    def ours(x, kernel, bias):
        return lpm.low_precision_matmul(x, kernel, bias, transpose_kernel, F32)

    y, vjp = jax.jit(lambda *a: jax.vjp(ours, *a))(x, kernel, bias)
    np.testing.assert_allclose(y, reference(x, kernel, bias, transpose_kernel, dtype), rtol=1e-5, atol=1e-5)
    d_x, d_kernel, d_bias = vjp(d_y)
    assert d_x.dtype == dtype and d_kernel.dtype == F32  # the kernel's gradient in its own dtype

    # Backward: the cotangent rounded to the compute dtype, products accumulated in float32;
    # the bias gradient from the cotangent as given.
    g = rounded(d_y, dtype)
    w = rounded(kernel, dtype)
    want_d_x = jnp.matmul(g, w if transpose_kernel else w.T, precision="highest")
    want_d_kernel = jnp.matmul(g.T, rounded(x, dtype), precision="highest")
    want_d_kernel = want_d_kernel if transpose_kernel else want_d_kernel.T
    np.testing.assert_allclose(d_x.astype(F32), rounded(want_d_x, dtype), rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(d_kernel, want_d_kernel, rtol=1e-5, atol=1e-5)
    if with_bias:
        assert d_bias.dtype == F32
        np.testing.assert_allclose(d_bias, d_y.sum(0), rtol=1e-5, atol=1e-5)
    else:
        assert d_bias is None


def test_the_weight_gradient_is_not_rounded_through_bfloat16():
    """Cast inside the product, the float32 kernel gets a float32 gradient from the float32
    accumulator: finer than the bfloat16 cast outside would give (its gradient is bfloat16)."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(64, 16)), jnp.bfloat16)
    kernel = jnp.asarray(rng.normal(size=(16, 8)), F32)
    d_kernel = jax.grad(lambda k: matmul_trailing(x, k, 1).astype(F32).sum())(kernel)
    outside = jax.grad(lambda k: (x @ k.astype(jnp.bfloat16)).astype(F32).sum())(kernel)
    exact = np.asarray(x, np.float64).T @ np.ones((64, 8))
    assert np.abs(np.asarray(d_kernel, np.float64) - exact).max() < 1e-4
    assert np.abs(np.asarray(outside, np.float64) - exact).max() > 1e-3  # the rounding it avoids


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_transposed_copies_equal_the_transpose_on_every_path(backend, monkeypatch):
    monkeypatch.setattr(lpm.jax, "default_backend", lambda: backend)
    for shape in [(5, 7), (5, 1), (0, 4), (6, 2)]:
        a = jnp.arange(np.prod(shape), dtype=F32).reshape(shape)
        np.testing.assert_array_equal(lpm._transposed_copy(a), a.T)
    a, b = jnp.ones((9, 3)), jnp.arange(45.0).reshape(9, 5)
    np.testing.assert_allclose(lpm._weight_gradient(a, b), a.T @ b)   # a is the narrower: a^T copied
    np.testing.assert_allclose(lpm._weight_gradient(b, a), b.T @ a)   # b wider: (a^T b)^T computed


@pytest.mark.parametrize("x_shape,kernel_shape,num_in", [
    ((2, 5, 6), (6, 7), 1),          # dense
    ((2, 5, 3, 4), (3, 4, 6), 2),    # attention output projection
    ((2, 5, 6), (6, 3, 2, 4), 1),    # fused q/k/v with a [3, heads, head_dim] bias
])
def test_matmul_trailing_in_bfloat16_equals_the_float32_einsum_with_bias(x_shape, kernel_shape, num_in):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=x_shape), jnp.bfloat16)
    kernel = jnp.asarray(rng.normal(size=kernel_shape), F32)
    bias = jnp.asarray(rng.normal(size=kernel_shape[num_in:]), F32)
    letters = "abcd"[:len(x_shape) - num_in]
    ins, outs = "pq"[:num_in], "uvw"[:len(kernel_shape) - num_in]
    want = jnp.einsum(f"{letters}{ins},{ins}{outs}->{letters}{outs}", rounded(x, jnp.bfloat16),
                      rounded(kernel, jnp.bfloat16), precision="highest") + bias[(None,) * len(letters)]
    got = matmul_trailing(x, kernel, num_in, bias=bias)
    assert got.dtype == jnp.bfloat16 and got.shape == want.shape
    np.testing.assert_allclose(got.astype(F32), rounded(want, jnp.bfloat16), rtol=1e-2, atol=1e-2)
    got32 = matmul_trailing(x, kernel, num_in, bias=bias, preferred_element_type=F32)
    np.testing.assert_allclose(got32, want, rtol=1e-5, atol=1e-5)


def test_linear_in_bfloat16_keeps_float32_parameters_and_gradients():
    layer = Linear((8,), ("embed", "mlp"), dtype=jnp.bfloat16)
    x = jnp.asarray(np.random.default_rng(4).normal(size=(3, 5, 6)), F32)
    params = nn.unbox(layer.init(jax.random.key(0), x))
    y = layer.apply(params, x)
    assert y.dtype == jnp.bfloat16
    grads = jax.grad(lambda p: layer.apply(p, x).astype(F32).sum())(params)
    kernel = params["params"]["kernel"]
    assert grads["params"]["kernel"].dtype == F32 and grads["params"]["bias"].dtype == F32
    np.testing.assert_allclose(grads["params"]["bias"], np.full(8, 15.0), rtol=1e-6)
    want = rounded(x, jnp.bfloat16).reshape(15, 6).sum(0)[:, None] * jnp.ones((1, 8))
    np.testing.assert_allclose(grads["params"]["kernel"], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y.astype(F32), rounded(rounded(x, jnp.bfloat16) @ rounded(kernel, jnp.bfloat16),
                                                       jnp.bfloat16), rtol=1e-2, atol=1e-2)


def _low_precision_dots(compiled_text):
    """The dot instructions of a compiled program whose operands are both bfloat16."""
    types = dict(re.findall(r"%([\w.\-]+) = (\w+)\[", compiled_text))
    return [m for m in re.finditer(r"= \w+\[[^\n]*? dot\(%([\w.\-]+), %([\w.\-]+)\)", compiled_text)
            if types.get(m.group(1)) == types.get(m.group(2)) == "bf16"]


def test_on_cpu_all_three_products_compile_to_bfloat16_dots():
    """XLA:CPU runs a bfloat16 dot that contracts its left operand's major axis in float32
    (4x slower than its bfloat16 kernels); the layer's forward, input-gradient and
    weight-gradient dots must all stay bfloat16. Compiled at the default optimisation level
    (the test settings lower it for compile speed)."""
    x = jnp.ones((512, 96), jnp.bfloat16)
    kernel, bias = jnp.ones((96, 160), F32), jnp.ones((160,), F32)

    def fwd_bwd(x, kernel, bias):
        y, vjp = jax.vjp(lambda *a: lpm.low_precision_matmul(*a, False, jnp.bfloat16), x, kernel, bias)
        return y, vjp(jnp.ones_like(y))

    text = jax.jit(fwd_bwd).lower(x, kernel, bias).compile(
        compiler_options={"xla_backend_optimization_level": 3}).as_text()
    assert len(_low_precision_dots(text)) == 3, text


def _dot_output_shapes(compiled_text):
    return re.findall(r"= f32\[([\d,]+)\][^\n]*? dot\(", compiled_text)


@pytest.mark.parametrize("x_shape,kernel_shape,num_in", [
    ((4, 5, 48), (48, 12), 1),       # an MLP's output projection (narrowing)
    ((4, 5, 3, 16), (3, 16, 12), 2),  # attention output projection with more inputs than outputs
    ((4, 5, 12), (12, 48), 1),       # widening: plain autodiff
])
def test_float32_layers_match_autodiff_and_narrowing_ones_get_a_wide_minor_weight_gradient(
        x_shape, kernel_shape, num_in):
    """float32 layers with more inputs than outputs go through the custom backward on CPU, whose
    weight gradient is computed as [outputs, inputs] (XLA:CPU's faster orientation) and copied
    to [inputs, outputs]. Same values as autodiff of the plain product; the orientation is
    checked on the program compiled at the default optimisation level."""
    rng = np.random.default_rng(11)
    x = jnp.asarray(rng.normal(size=x_shape), F32)
    kernel = jnp.asarray(rng.normal(size=kernel_shape), F32)
    bias = jnp.asarray(rng.normal(size=kernel_shape[num_in:]), F32)
    letters = "abc"[:len(x_shape) - num_in]
    ins, outs = "pq"[:num_in], "u"
    d_y = jnp.asarray(rng.normal(size=x_shape[:len(letters)] + kernel_shape[num_in:]), F32)

    def plain(x, kernel, bias):
        return jnp.einsum(f"{letters}{ins},{ins}{outs}->{letters}{outs}", x, kernel, precision="highest") + bias[(None,) * len(letters)]

    def ours(x, kernel, bias):
        return matmul_trailing(x, kernel, num_in, bias=bias)

    def fwd_bwd(f):
        def run(x, kernel, bias):
            y, vjp = jax.vjp(f, x, kernel, bias)
            return (y,) + vjp(d_y)
        return jax.jit(run)

    for got, want in zip(fwd_bwd(ours)(x, kernel, bias), fwd_bwd(plain)(x, kernel, bias)):
        assert got.dtype == F32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    text = fwd_bwd(ours).lower(x, kernel, bias).compile(
        compiler_options={"xla_backend_optimization_level": 3}).as_text()
    n_in, n_out = np.prod(kernel_shape[:num_in]), np.prod(kernel_shape[num_in:])
    shapes = set(_dot_output_shapes(text))
    if n_in > n_out:
        assert f"{n_out},{n_in}" in shapes and f"{n_in},{n_out}" not in shapes, shapes
    else:
        assert f"{n_in},{n_out}" in shapes, shapes


def test_bfloat16_attention_on_cpu_is_the_float32_attention_rounded_once():
    rng = np.random.default_rng(5)
    q, k, v = (jnp.asarray(rng.normal(size=(2, 128, 2, 8)), jnp.bfloat16) for _ in range(3))
    got = fused_attention(q, k, v, scale=0.35, is_causal=True)
    assert got.dtype == jnp.bfloat16
    want = fused_attention(*(x.astype(F32) for x in (q, k, v)), scale=0.35, is_causal=True)
    np.testing.assert_array_equal(got, want.astype(jnp.bfloat16))
    grads = jax.grad(lambda *a: fused_attention(*a, scale=0.35, is_causal=True).astype(F32).sum(),
                     argnums=(0, 1, 2))(q, k, v)
    want_grads = jax.grad(lambda *a: fused_attention(*a, scale=0.35, is_causal=True).sum(),
                          argnums=(0, 1, 2))(*(x.astype(F32) for x in (q, k, v)))
    for g, w in zip(grads, want_grads):
        assert g.dtype == jnp.bfloat16
        np.testing.assert_array_equal(g, w.astype(jnp.bfloat16))


def test_bfloat16_self_attention_layer_matches_float32_within_bfloat16_rounding():
    x = jnp.asarray(np.random.default_rng(6).normal(size=(2, 16, 32)), F32)
    kw = dict(num_heads=4, head_dim=8)
    layer16, layer32 = MultiHeadAttention(**kw, dtype=jnp.bfloat16), MultiHeadAttention(**kw)
    params = layer32.init(jax.random.key(0), x)
    y16 = layer16.apply(params, x, is_causal=True)
    y32 = layer32.apply(params, x, is_causal=True)
    assert y16.dtype == jnp.bfloat16
    np.testing.assert_allclose(y16.astype(F32), y32, rtol=5e-2, atol=5e-2)
    assert float(jnp.abs(y16.astype(F32) - y32).mean()) < 1e-2 * float(jnp.abs(y32).mean()) + 1e-3


@pytest.mark.parametrize("dtype,K,N", [(jnp.bfloat16, 16, 24), (jnp.bfloat16, 24, 16), (F32, 24, 16)])
def test_sharded_products_equal_one_device_exactly(dtype, K, N):
    """Rows over two mesh axes, the kernel over the third (FSDP / tensor-parallel style): the
    custom forward and backward, transposed copies included, partition like the plain dot.
    Small integers make every bfloat16 product and float32 sum exact, so equality is exact.
    (K > N: the weight gradient is computed [N, K] and transposed.)"""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 2, 2), ("data", "fsdp", "tensor"))
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.integers(-3, 4, size=(32, K)), dtype)
    kernel = jnp.asarray(rng.integers(-3, 4, size=(K, N)), F32)
    bias = jnp.asarray(rng.integers(-3, 4, size=(N,)), F32)
    d_y = jnp.asarray(rng.integers(-3, 4, size=(32, N)), F32)

    def fwd_bwd(x, kernel, bias, d_y):
        y, vjp = jax.vjp(lambda *a: lpm.low_precision_matmul(*a, False, F32), x, kernel, bias)
        return (y,) + vjp(d_y)

    want = jax.jit(fwd_bwd)(x, kernel, bias, d_y)
    shard = lambda a, spec: jax.device_put(a, NamedSharding(mesh, spec))  # noqa: E731
    got = jax.jit(fwd_bwd)(shard(x, P(("data", "fsdp"), None)), shard(kernel, P("fsdp", "tensor")),
                           shard(bias, P("tensor")), shard(d_y, P(("data", "fsdp"), "tensor")))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.asarray(g, np.float32), np.asarray(w, np.float32))


def test_bfloat16_decoding_keeps_a_bfloat16_key_value_cache():
    layer = MultiHeadAttention(num_heads=2, head_dim=4, max_cache_len=8, dtype=jnp.bfloat16)
    x = jnp.ones((1, 1, 8), F32)
    variables = layer.init(jax.random.key(0), x, decode=True, cache_index=0)
    y, cache = layer.apply(variables, x, decode=True, cache_index=0, mutable=["cache"])
    assert y.dtype == jnp.bfloat16
    assert {leaf.dtype for leaf in jax.tree.leaves(cache)} == {jnp.dtype(jnp.bfloat16)}
