"""MultiHeadAttention: projections + attention against a numpy reference, and its cache rules."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sora_jax.nn import MultiHeadAttention, key_padding_mask
from tests.nn.test_attention_core import numpy_attention


@pytest.mark.parametrize("kind,kv_heads", [("self", 4), ("self", 2), ("cross", 1)])
def test_projections_and_attention_match_numpy(kind, kv_heads):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 16)).astype(np.float32)
    memory = rng.normal(size=(2, 7, 12)).astype(np.float32) if kind == "cross" else None
    source = x if memory is None else memory
    valid = np.arange(source.shape[1])[None, :] < np.array([[source.shape[1] - 2], [source.shape[1]]])
    mask = key_padding_mask(jnp.asarray(valid))
    layer = MultiHeadAttention(num_heads=4, head_dim=8, num_kv_heads=kv_heads, kind=kind)
    variables = layer.init(jax.random.key(0), x, memory, mask)
    got = layer.apply(variables, x, memory, mask)
    p = jax.tree.map(np.asarray, nn.meta.unbox(variables["params"]))

    def project(inp, name):
        return np.einsum("btd,dnh->btnh", inp, p[name]["kernel"]) + p[name]["bias"]

    attn = numpy_attention(project(x, "query"), project(source, "key"), project(source, "value"),
                           mask=np.asarray(mask))
    want = np.einsum("btnh,nhd->btd", attn, p["out"]["kernel"]) + p["out"]["bias"]
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)
    assert p["key"]["kernel"].shape == (source.shape[-1], kv_heads, 8)


def test_cross_attention_decode_needs_memory_or_a_prefilled_cache():
    layer = MultiHeadAttention(num_heads=2, head_dim=4, kind="cross")
    x, memory = jnp.ones((1, 1, 8)), jnp.ones((1, 3, 8))
    params = layer.init(jax.random.key(0), x, memory)["params"]
    with pytest.raises(ValueError, match="prefill"):
        layer.apply({"params": params}, x, None, decode=True, mutable=["cache"])
    out, cache = layer.apply({"params": params}, x, memory, decode=True, mutable=["cache"])
    again, _ = layer.apply({"params": params, **cache}, x, None, decode=True, mutable=["cache"])
    np.testing.assert_allclose(np.asarray(again), np.asarray(out), atol=1e-6)


def test_self_attention_decode_needs_a_cache_length():
    layer = MultiHeadAttention(num_heads=2, head_dim=4)
    x = jnp.ones((1, 1, 8))
    params = layer.init(jax.random.key(0), x)["params"]
    with pytest.raises(ValueError, match="max_cache_len"):
        layer.apply({"params": params}, x, decode=True, cache_index=0, mutable=["cache"])
