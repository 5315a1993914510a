"""The suite compiles with --xla_backend_optimization_level=0 (compile time dominates on 2 cores).
This test re-checks the central numerical equalities in a fresh process at XLA's default level,
the one users run: attention implementations agree (forward and gradients) and scanned ==
unrolled layers for the whole model."""

import os
import subprocess
import sys
import textwrap

CHECK = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np, flax.linen as nn
    jax.config.update("jax_numpy_rank_promotion", "raise")
    from sora_jax.nn import dot_product_attention, key_padding_mask, convert_layer_layout
    from sora_jax.models import SoraModel, presets
    from tests.batches import make_batch
    from tests.models.helpers import all_parts

    ks = jax.random.split(jax.random.key(0), 3)
    q = jax.random.normal(ks[0], (2, 37, 4, 16))
    kv = jax.random.normal(ks[1], (2, 37, 2, 16))
    mask = key_padding_mask(jnp.arange(37)[None, :] < jnp.array([[30], [37]]))
    def loss(impl, q, kv):
        out = dot_product_attention(q, kv, kv, mask, is_causal=True, implementation=impl, chunk_size=8)
        return jnp.sum(out * jnp.sin(jnp.arange(out.size, dtype=jnp.float32)).reshape(out.shape)), out
    ref = jax.jit(jax.grad(lambda *a: loss("explicit", *a), argnums=(0, 1), has_aux=True))(q, kv)
    for impl in ("jax", "chunked"):
        got = jax.jit(jax.grad(lambda *a: loss(impl, *a), argnums=(0, 1), has_aux=True))(q, kv)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, rtol=2e-5)

    b = make_batch(presets.tiny())
    args = (b["text"], b["text_valid"], b["images"], b["dec"])
    unrolled = all_parts(presets.tiny(), scan_layers=False)
    params = nn.meta.unbox(jax.jit(SoraModel(unrolled).init)(jax.random.key(0), *args)["params"])
    out_u = jax.jit(lambda p: SoraModel(unrolled).apply({"params": p}, *args)["logits"])(params)
    out_s = jax.jit(lambda p: SoraModel(presets.tiny()).apply({"params": p}, *args)["logits"])(
        convert_layer_layout(params, scanned=True))
    np.testing.assert_allclose(np.asarray(out_s), np.asarray(out_u), atol=1e-5)
    import os
    assert "optimization_level" not in os.environ.get("XLA_FLAGS", ""), os.environ["XLA_FLAGS"]
    print("default-level checks passed")
""")


def test_central_equalities_hold_at_the_default_xla_optimisation_level():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", CHECK], cwd=root, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "default-level checks passed" in result.stdout
