"""The whole model: logical axis names on every parameter, parameter counts, dtypes, and that a
tiny model can overfit one batch along the captioning and the text-to-text paths."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sora_jax.models import SoraModel, count_parameters, presets
from tests.batches import make_batch
from tests.models.helpers import all_parts, replace

VARIANTS = {
    "tiny": {},
    "unrolled_cross_rmsnorm_swiglu": dict(parts=dict(scan_layers=False, norm="rmsnorm", mlp_activation="swiglu",
                                                     num_kv_heads=2), fusion=dict(mode="cross")),
    "untied_bert_style": dict(decoder=dict(tie_embeddings=False, position="rope"),
                              text_encoder=dict(type_vocab_size=2, embed_norm=True, norm_position="post",
                                                position="sinusoidal"),
                              image_encoder=dict(block="bottleneck", position="learned")),
    "shared_text_embeddings": dict(share_text_embeddings=True),
}


def _variant(name):
    spec = dict(VARIANTS[name])
    cfg = presets.tiny()
    if "parts" in spec:
        cfg = all_parts(cfg, **spec.pop("parts"))
    return replace(cfg, **spec)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_parameter_has_logical_axis_names(variant):
    cfg = _variant(variant)
    batch = make_batch(cfg)
    boxed = jax.eval_shape(SoraModel(cfg).init, jax.random.key(0), batch["text"], batch["text_valid"],
                           batch["images"], batch["dec"])["params"]
    leaves = jax.tree_util.tree_leaves_with_path(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert len(leaves) > 20
    for path, leaf in leaves:
        where = jax.tree_util.keystr(path)
        assert isinstance(leaf, nn.LogicallyPartitioned), f"{where} has no logical axis names"
        assert len(leaf.names) == leaf.value.ndim, f"{where}: names {leaf.names} for shape {leaf.value.shape}"
        assert all(isinstance(n, str) and n for n in leaf.names), f"{where}: unnamed axis in {leaf.names}"
        if "layers" in where and cfg.decoder.scan_layers:
            assert leaf.names[0] == "layers", where
        assert len(set(leaf.names)) == len(leaf.names), f"{where}: repeated axis name in {leaf.names}"
    # Every name resolves through a MaxText-style rule table into a valid mesh PartitionSpec.
    specs = nn.get_partition_spec(boxed)
    assert len(jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))) == len(leaves)
    names = {n for _, leaf in leaves for n in leaf.names}
    rules = [("embed", "fsdp"), ("mlp", "tensor"), ("heads", "tensor"), ("kv_heads", "tensor"),
             ("vocab", "tensor"), ("conv_out", "tensor")]
    mesh_specs = nn.logical_to_mesh(specs, rules)
    for spec in jax.tree.leaves(mesh_specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)):
        used = [a for a in spec if a is not None]
        assert len(used) == len(set(used)), spec  # no mesh axis used twice in one parameter
    assert {"embed", "mlp", "heads", "vocab", "conv_out", "layers"} <= names | {"layers"}


def test_shared_text_embeddings_are_one_table_equal_to_copying_it_into_both_parts(tiny_config):
    """model.share_text_embeddings: the encoder reads and the decoder reads and writes (tied logits)
    one table. Reference: the unshared model with that table copied into both parts gives the same
    logits, and the shared table's gradient is the sum of the two copies' gradients."""
    shared_cfg = replace(tiny_config, share_text_embeddings=True)
    batch = make_batch(tiny_config)
    inputs = (batch["text"], batch["text_valid"], batch["images"], batch["dec"])
    # Jitted: run op by op, these two inits and gradients took 45 s in the suite (a compile per op).
    shared = nn.meta.unbox(jax.jit(SoraModel(shared_cfg).init)(jax.random.key(0), *inputs)["params"])
    plain = nn.meta.unbox(jax.jit(SoraModel(tiny_config).init)(jax.random.key(0), *inputs)["params"])
    table = shared["shared_text_embedding"]["embedding"]
    assert "token_embed" not in shared["text_encoder"]["embedding"] and "token_embed" not in shared["decoder"]["embedding"]
    assert count_parameters(shared)["total"] == count_parameters(plain)["total"] - table.size
    copied = jax.tree_util.tree_map(lambda x: x, plain)
    for part in ("text_encoder", "decoder"):
        copied[part] = {k: v for k, v in shared[part].items()}
        copied[part]["embedding"] = dict(shared[part]["embedding"], token_embed={"embedding": table})
    for name in set(plain) - {"text_encoder", "decoder"}:
        copied[name] = shared[name]

    def loss(model, params):
        enc = model.apply({"params": params}, *inputs[:3], method=SoraModel.encode)
        logits = model.apply({"params": params}, inputs[3], enc.memory, enc.memory_valid, method=SoraModel.decode)
        return optax.softmax_cross_entropy_with_integer_labels(logits, inputs[3]).mean(), logits

    (l_shared, logits_shared), g_shared = jax.jit(jax.value_and_grad(
        lambda p: loss(SoraModel(shared_cfg), p), has_aux=True))(shared)
    (l_copied, logits_copied), g_copied = jax.jit(jax.value_and_grad(
        lambda p: loss(SoraModel(tiny_config), p), has_aux=True))(copied)
    np.testing.assert_allclose(logits_shared, logits_copied, rtol=1e-5, atol=1e-5)
    both = (g_copied["text_encoder"]["embedding"]["token_embed"]["embedding"]
            + g_copied["decoder"]["embedding"]["token_embed"]["embedding"])
    assert float(jnp.abs(g_copied["text_encoder"]["embedding"]["token_embed"]["embedding"]).max()) > 0
    np.testing.assert_allclose(g_shared["shared_text_embedding"]["embedding"], both, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("change, message", [
    (dict(decoder=dict(vocab_size=48)), "same vocab_size"),
    (dict(text_encoder=dict(init_from="/some/bert")), "init_from"),
])
def test_shared_text_embeddings_need_matching_parts(tiny_config, change, message):
    from sora_jax.models.errors import ConfigError
    with pytest.raises(ConfigError, match=rf"model\.share_text_embeddings: .*{message}"):
        replace(tiny_config, share_text_embeddings=True, **change)


def test_grouped_query_attention_shares_key_value_heads(tiny_config):
    cfg = all_parts(tiny_config, num_kv_heads=2)
    batch = make_batch(cfg)
    params = nn.meta.unbox(jax.eval_shape(SoraModel(cfg).init, jax.random.key(0), batch["text"],
                                          batch["text_valid"], batch["images"], batch["dec"])["params"])
    attn = params["decoder"]["blocks"]["layers"]["self_attention"]
    assert attn["query"]["kernel"].shape == (2, 32, 4, 8)  # [layers, embed, heads, head_dim]
    assert attn["key"]["kernel"].shape == (2, 32, 2, 8)  # [layers, embed, kv_heads, head_dim]


def test_parameter_counts_match_the_formula(tiny_config):
    cfg = replace(tiny_config, text_encoder=dict(num_layers=3))
    batch = make_batch(cfg)
    params = jax.eval_shape(SoraModel(cfg).init, jax.random.key(0), batch["text"], batch["text_valid"],
                            batch["images"], batch["dec"])["params"]
    counts = count_parameters(params)
    te = cfg.text_encoder
    d, m, L = te.d_model, te.mlp_dim, te.num_layers
    per_layer = 4 * (d * d + d) + (d * m + m) + (m * d + d) + 2 * 2 * d  # attention, mlp, two layernorms
    assert counts["text_encoder"] == te.vocab_size * d + te.max_len * d + L * per_layer + 2 * d
    assert counts["classifier"] == cfg.fusion.d_model * cfg.num_classes + cfg.num_classes
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


def test_bfloat16_computation_keeps_float32_parameters_and_logits(tiny_config, tiny_batch):
    cfg = replace(tiny_config, dtype="bfloat16")
    model = SoraModel(cfg)
    args = (tiny_batch["text"], tiny_batch["text_valid"], tiny_batch["images"], tiny_batch["dec"])
    variables = jax.jit(model.init)(jax.random.key(0), *args)
    params = nn.meta.unbox(variables["params"])
    assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    out16 = jax.jit(lambda p: model.apply({"params": p}, *args))(params)
    out32 = jax.jit(lambda p: SoraModel(replace(cfg, dtype="float32")).apply({"params": p}, *args))(params)
    assert out16["logits"].dtype == jnp.float32 and out16["encoded"].memory.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out16["logits"]), np.asarray(out32["logits"]), atol=0.1)


def _overfit(cfg, inputs, targets, steps=100, lr=3e-3):
    """Teacher-forced next-token training on one batch. Returns the first and last mean losses and,
    after training, the first-token loss with each example's own memory and with another example's.
    Only the memory can tell the first token (all examples start from the same BOS)."""
    model = SoraModel(cfg)
    text, text_valid, images = inputs
    bos = jnp.zeros((targets.shape[0], 1), jnp.int32)
    decoder_in = jnp.concatenate([bos, targets[:, :-1]], axis=1)
    params = nn.meta.unbox(jax.jit(model.init)(jax.random.key(0), text, text_valid, images, decoder_in)["params"])
    tx = optax.adam(lr)

    def loss_by_position(p, shuffle_memory=False):
        enc = model.apply({"params": p}, text, text_valid, images, method=SoraModel.encode)
        memory, valid = enc.memory, enc.memory_valid
        if shuffle_memory:
            memory, valid = jnp.roll(memory, 1, axis=0), jnp.roll(valid, 1, axis=0)
        logits = model.apply({"params": p}, decoder_in, memory, valid, method=SoraModel.decode)
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean(axis=0)

    @jax.jit
    def train_step(p, opt_state):
        loss, grads = jax.value_and_grad(lambda p: loss_by_position(p).mean())(p)
        updates, opt_state = tx.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, loss

    opt_state = tx.init(params)
    losses = []
    for _ in range(steps):
        params, opt_state, loss = train_step(params, opt_state)
        losses.append(float(loss))
    first_token = float(jax.jit(loss_by_position)(params)[0])
    first_token_shuffled = float(jax.jit(lambda p: loss_by_position(p, shuffle_memory=True))(params)[0])
    return losses[0], losses[-1], first_token, first_token_shuffled


def _targets(cfg, batch, length, seed):
    # Every example has its own target, so the decoder must read the memory to fit them.
    return jnp.asarray(np.random.default_rng(seed).integers(1, cfg.decoder.vocab_size, (batch, length)), jnp.int32)


def test_tiny_model_overfits_a_captioning_batch(tiny_config):
    cfg = tiny_config
    batch = make_batch(cfg, batch=4)
    first, last, own, other = _overfit(cfg, (None, None, batch["images"]), _targets(cfg, 4, 8, seed=1))
    assert first > 3.5 and last < first / 10, (first, last)
    assert own < 0.3 and other > 2.0, (own, other)  # the first word is read from the image


def test_tiny_model_overfits_a_text_to_text_batch(tiny_config):
    cfg = tiny_config
    batch = make_batch(cfg, batch=4)
    first, last, own, other = _overfit(cfg, (batch["text"], batch["text_valid"], None), _targets(cfg, 4, 8, seed=2))
    assert first > 3.5 and last < first / 10, (first, last)
    assert own < 0.3 and other > 2.0, (own, other)  # the first word is read from the source text
