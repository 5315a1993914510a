"""Decoder causality, padding invariance, KV-cache decoding, scan/remat/jit equivalence."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sora_jax.models import SoraModel
from sora_jax.nn import convert_layer_layout
from tests.models.helpers import all_parts, encode, init_params, replace


@pytest.mark.parametrize("impl,position", [("explicit", "learned"), ("jax", "learned"), ("chunked", "learned"),
                                           ("explicit", "rope")])
def test_decoder_is_causal_through_gradients(tiny_config, tiny_batch, impl, position):
    cfg = replace(tiny_config, decoder=dict(attention_impl=impl, chunk_size=3, position=position))
    model, params = init_params(cfg, tiny_batch)
    enc = encode(model, params, tiny_batch)
    tokens = tiny_batch["dec"]
    zeros = jax.eval_shape(lambda: model.apply({"params": params}, tokens, enc.memory, enc.memory_valid,
                                               method=SoraModel.decode, mutable=["perturbations"]))[1]
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zeros["perturbations"])

    def outputs_by_position(perturbations):  # [T]: one scalar per output position
        logits = model.apply({"params": params, "perturbations": perturbations}, tokens, enc.memory,
                             enc.memory_valid, method=SoraModel.decode)
        return jnp.sum(logits * jnp.arange(logits.shape[-1], dtype=jnp.float32)[None, None], axis=(0, 2))

    jacobian = jax.jit(jax.jacrev(outputs_by_position))(zeros)["decoder"]["embeddings"]  # [T_out, B, T_in, D]
    influence = np.asarray(jnp.abs(jacobian).sum(axis=(1, 3)))  # [T_out, T_in]
    T = tokens.shape[1]
    future = np.triu(np.ones((T, T), bool), k=1)
    assert np.all(influence[future] == 0.0), influence
    assert np.all(influence[~future] > 0.0), influence


def test_padding_does_not_change_real_positions_or_the_pooled_vector(tiny_config, tiny_batch):
    model, params = init_params(tiny_config, tiny_batch)
    text, valid = tiny_batch["text"], tiny_batch["text_valid"]
    other = jnp.where(valid, text, (text * 7 + 3) % tiny_config.text_encoder.vocab_size)
    assert not np.array_equal(np.asarray(other), np.asarray(text))

    @jax.jit
    def run(t):
        states, pooled = model.apply({"params": params}, t, valid,
                                     method=lambda m, *a: m.text_encoder(*a))
        enc = model.apply({"params": params}, t, valid, tiny_batch["images"], method=SoraModel.encode)
        logits = model.apply({"params": params}, tiny_batch["dec"], enc.memory, enc.memory_valid,
                             method=SoraModel.decode)
        return states, pooled, enc, logits

    s1, p1, e1, l1 = run(text)
    s2, p2, e2, l2 = run(other)
    mask = np.asarray(valid)[..., None]
    np.testing.assert_allclose(np.asarray(s1) * mask, np.asarray(s2) * mask, atol=1e-6)
    np.testing.assert_allclose(np.asarray(p1), np.asarray(p2), atol=1e-6)
    np.testing.assert_allclose(np.asarray(e1.pooled), np.asarray(e2.pooled), atol=1e-6)
    mem_mask = np.asarray(e1.memory_valid)[..., None]
    np.testing.assert_allclose(np.asarray(e1.memory) * mem_mask, np.asarray(e2.memory) * mem_mask, atol=1e-6)
    np.testing.assert_allclose(np.asarray(l1), np.asarray(l2), atol=1e-5)


def _decode_incrementally(model, params, tokens, memory, valid, prefill):
    step = jax.jit(lambda p, c, tok, *mem: model.apply({"params": p, **c}, tok, *mem,
                                                       method=SoraModel.decode_step, mutable=["cache"]))
    mem = () if memory is None else (memory, valid)
    logits, cache = step(params, {}, tokens[:, :prefill], *mem)
    outs = [logits]
    for t in range(prefill, tokens.shape[1]):
        logits, cache = step(params, cache, tokens[:, t:t + 1])
        outs.append(logits)
    return jnp.concatenate(outs, axis=1), cache


@pytest.mark.parametrize("position,impl,cross", [("learned", "explicit", True), ("rope", "chunked", True),
                                                 ("sinusoidal", "jax", False)])
def test_kv_cache_decoding_reproduces_the_full_forward(tiny_config, tiny_batch, position, impl, cross):
    cfg = replace(tiny_config, decoder=dict(position=position, attention_impl=impl, cross_attention=cross,
                                            num_kv_heads=2))
    model, params = init_params(cfg, tiny_batch) if cross else _init_decoder_only(cfg, tiny_batch)
    memory = valid = None
    if cross:
        enc = encode(model, params, tiny_batch)
        memory, valid = enc.memory, enc.memory_valid
    tokens = tiny_batch["dec"]
    full = jax.jit(lambda p: model.apply({"params": p}, tokens, memory, valid, method=SoraModel.decode))(params)
    for prefill in (1, 3):  # token by token, and a 3-token prompt followed by single steps
        stepped, cache = _decode_incrementally(model, params, tokens, memory, valid, prefill)
        np.testing.assert_allclose(np.asarray(stepped), np.asarray(full), atol=2e-5, rtol=1e-5)
        assert int(cache["cache"]["decoder"]["index"]) == tokens.shape[1]


def _init_decoder_only(cfg, batch):
    model = SoraModel(cfg)
    variables = jax.jit(lambda k: model.init(k, batch["dec"], method=SoraModel.decode))(jax.random.key(0))
    return model, nn.meta.unbox(variables["params"])


def _forward_and_grads(model, params, batch):
    return jax.jit(lambda p: _loss_and_grads(model, p, batch))(params)


def _loss_and_grads(model, params, batch):
    def loss(p):
        out = model.apply({"params": p}, batch["text"], batch["text_valid"], batch["images"], batch["dec"])
        return jnp.mean(out["logits"] ** 2) + jnp.mean(out["class_logits"] ** 2), out
    (value, out), grads = jax.value_and_grad(loss, has_aux=True)(params)
    return out, grads


@pytest.mark.parametrize("mode", ["joint", "cross"])
def test_scanned_and_unrolled_layers_are_equal(tiny_config, tiny_batch, mode):
    unrolled = all_parts(replace(tiny_config, fusion=dict(mode=mode)), scan_layers=False)
    scanned = all_parts(replace(tiny_config, fusion=dict(mode=mode)), scan_layers=True)
    model_u, params_u = init_params(unrolled, tiny_batch)
    params_s = convert_layer_layout(params_u, scanned=True)
    out_u, grads_u = _forward_and_grads(model_u, params_u, tiny_batch)
    out_s, grads_s = _forward_and_grads(SoraModel(scanned), params_s, tiny_batch)
    np.testing.assert_allclose(np.asarray(out_s["logits"]), np.asarray(out_u["logits"]), atol=1e-5)
    chex.assert_trees_all_close(grads_s, convert_layer_layout(grads_u, scanned=True), atol=1e-5)
    # And the layouts convert back exactly.
    chex.assert_trees_all_equal(convert_layer_layout(params_s, scanned=False), params_u)


@pytest.mark.parametrize("policy,scan", [("full", True), ("dots", True), ("full", False)])
def test_remat_changes_nothing_numerically(tiny_config, tiny_batch, policy, scan):
    plain_cfg = all_parts(tiny_config, scan_layers=scan)
    model, params = init_params(plain_cfg, tiny_batch)
    remat_model = SoraModel(all_parts(tiny_config, scan_layers=scan, remat_policy=policy))
    out, grads = _reference_forward_and_grads(plain_cfg)
    out_r, grads_r = _forward_and_grads(remat_model, params, tiny_batch)
    np.testing.assert_allclose(np.asarray(out_r["logits"]), np.asarray(out["logits"]), atol=1e-6)
    chex.assert_trees_all_close(grads_r, grads, atol=1e-6)


@pytest.mark.parametrize("unroll", [2, 99])
def test_an_unrolled_scan_keeps_the_parameters_and_the_numbers(tiny_config, tiny_batch, unroll):
    """scan_unroll >= num_layers removes the loop (the XLA:CPU deadlock workaround); any value
    keeps the stacked parameters and the results."""
    cfg = all_parts(tiny_config, scan_layers=True)
    model, params = init_params(cfg, tiny_batch)
    unrolled = SoraModel(all_parts(tiny_config, scan_layers=True, scan_unroll=unroll))
    _, params_unrolled = init_params(all_parts(tiny_config, scan_layers=True, scan_unroll=unroll), tiny_batch)
    chex.assert_trees_all_equal(params_unrolled, params)
    out, grads = _reference_forward_and_grads(cfg)
    out_u, grads_u = _forward_and_grads(unrolled, params, tiny_batch)
    np.testing.assert_allclose(np.asarray(out_u["logits"]), np.asarray(out["logits"]), atol=1e-6)
    chex.assert_trees_all_close(grads_u, grads, atol=1e-6)
    if unroll >= cfg.decoder.num_layers:
        text = jax.jit(lambda p: unrolled.apply({"params": p}, tiny_batch["text"], tiny_batch["text_valid"],
                                                method=SoraModel.encode_text)).lower(params).as_text()
        assert "while" not in text


@functools.lru_cache(maxsize=None)
def _reference_forward_and_grads(cfg):
    from tests.batches import make_batch
    model, params = init_params(cfg)
    return _forward_and_grads(model, params, make_batch(cfg))


class JitEquivalenceTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_jit_and_no_jit_agree(self):
        from sora_jax.models import presets
        from tests.batches import make_batch
        cfg = presets.tiny()
        batch = make_batch(cfg)
        model, params = init_params(cfg, batch)
        reference = model.apply({"params": params}, batch["text"], batch["text_valid"], batch["images"], batch["dec"])

        @self.variant
        def forward(p, text, valid, images, dec):
            return model.apply({"params": p}, text, valid, images, dec)

        out = forward(params, batch["text"], batch["text_valid"], batch["images"], batch["dec"])
        np.testing.assert_allclose(np.asarray(out["logits"]), np.asarray(reference["logits"]), atol=1e-5)
        np.testing.assert_allclose(np.asarray(out["class_logits"]), np.asarray(reference["class_logits"]), atol=1e-5)


def test_dropout_is_active_only_in_training_and_seeded(tiny_config, tiny_batch):
    cfg = all_parts(tiny_config, dropout_rate=0.3, attention_dropout_rate=0.2)
    model, params = init_params(cfg, tiny_batch)
    args = (tiny_batch["text"], tiny_batch["text_valid"], tiny_batch["images"], tiny_batch["dec"])
    forward = jax.jit(lambda p, rng, train: model.apply({"params": p}, *args, deterministic=not train,
                                                       rngs={"dropout": rng})["logits"], static_argnums=2)
    eval_a = forward(params, jax.random.key(1), False)
    eval_b = forward(params, jax.random.key(2), False)
    np.testing.assert_array_equal(np.asarray(eval_a), np.asarray(eval_b))
    train = [forward(params, jax.random.key(s), True) for s in (1, 1, 2)]
    np.testing.assert_array_equal(np.asarray(train[0]), np.asarray(train[1]))
    assert not np.allclose(np.asarray(train[0]), np.asarray(train[2]))
    assert not np.allclose(np.asarray(train[0]), np.asarray(eval_a))


def test_decoder_logits_depend_on_the_memory(tiny_config, tiny_batch):
    model, params = init_params(tiny_config)
    enc = encode(model, params, tiny_batch)
    decode = jax.jit(lambda m, v: model.apply({"params": params}, tiny_batch["dec"], m, v, method=SoraModel.decode))
    a = decode(enc.memory, enc.memory_valid)
    b = decode(enc.memory[::-1], enc.memory_valid[::-1])
    assert np.abs(np.asarray(a[0]) - np.asarray(b[0])).max() > 1e-3


def test_decoding_past_the_cache_poisons_logits_instead_of_corrupting_them(tiny_config, tiny_batch):
    model, params = init_params(tiny_config)
    enc = encode(model, params, tiny_batch)
    L = tiny_config.decoder.max_len
    tokens = jnp.ones((2, L + 2), jnp.int32)
    stepped, _ = _decode_incrementally(model, params, tokens, enc.memory, enc.memory_valid, prefill=L - 1)
    assert bool(jnp.all(jnp.isfinite(stepped[:, :L]))) and bool(jnp.all(jnp.isnan(stepped[:, L:])))


def test_init_holds_only_parameters_and_checks_for_memory(tiny_config, tiny_batch):
    model = SoraModel(tiny_config)
    b = tiny_batch
    variables = jax.eval_shape(model.init, jax.random.key(0), b["text"], b["text_valid"], b["images"], b["dec"])
    assert set(variables) == {"params"}  # no 'perturbations' or 'cache' sized to the init batch
    with pytest.raises(ValueError, match="initialise the decoder with a memory"):
        jax.eval_shape(lambda: model.init(jax.random.key(0), b["dec"], method=SoraModel.decode))
