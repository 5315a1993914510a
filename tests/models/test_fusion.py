"""Both fusion modes with text-only, image-only and text+image inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sora_jax.models import SoraModel
from tests.models.helpers import init_params, replace


def _encode(model, params, text, valid, images):
    return jax.jit(lambda p, *a: model.apply({"params": p}, *a, method=SoraModel.encode))(params, text, valid, images)


@pytest.mark.parametrize("mode", ["joint", "cross"])
def test_every_modality_combination(tiny_config, tiny_batch, mode):
    cfg = replace(tiny_config, fusion=dict(mode=mode))
    model, params = init_params(cfg)
    text, valid, images = tiny_batch["text"], tiny_batch["text_valid"], tiny_batch["images"]
    B, T = text.shape
    P = cfg.image_encoder.grid_size ** 2

    both = _encode(model, params, text, valid, images)
    text_only = _encode(model, params, text, valid, None)
    image_only = _encode(model, params, None, None, images)
    assert both.memory.shape == (B, T + P, cfg.fusion.d_model)
    assert text_only.memory.shape == (B, T, cfg.fusion.d_model)
    assert image_only.memory.shape == (B, P, cfg.fusion.d_model)
    np.testing.assert_array_equal(np.asarray(both.memory_valid[:, :T]), np.asarray(valid))
    assert bool(jnp.all(both.memory_valid[:, T:])) and bool(jnp.all(image_only.memory_valid))
    for enc in (both, text_only, image_only):
        assert bool(jnp.all(jnp.isfinite(enc.memory))) and enc.pooled.shape == (B, cfg.fusion.d_model)
        mem = np.asarray(enc.memory)
        weights = np.asarray(enc.memory_valid, np.float32)[..., None]
        np.testing.assert_allclose(np.asarray(enc.pooled), (mem * weights).sum(1) / weights.sum(1), atol=1e-5)

    # The decoder and the classifier accept every kind of memory.
    for enc in (both, text_only, image_only):
        logits = jax.jit(lambda p, m, v: model.apply({"params": p}, tiny_batch["dec"], m, v,
                                                     method=SoraModel.decode))(params, enc.memory, enc.memory_valid)
        assert logits.shape == (B, tiny_batch["dec"].shape[1], cfg.decoder.vocab_size)
        class_logits = model.apply({"params": params}, enc.pooled, method=SoraModel.classify)
        assert class_logits.shape == (B, cfg.num_classes)

    # Text tokens see the image: changing the image changes the fused text tokens.
    other = _encode(model, params, text, valid, -images)
    changed = np.abs(np.asarray(other.memory[:, :T]) - np.asarray(both.memory[:, :T])).max()
    if mode == "joint":
        assert changed > 1e-4
    else:
        # Gates start at zero: the untrained cross mode passes text through unchanged...
        assert changed == 0.0
        np.testing.assert_allclose(np.asarray(both.memory[:, :T]), np.asarray(text_only.memory), atol=1e-6)
        # ...and opening the gates lets the image in.
        opened = jax.tree_util.tree_map_with_path(
            lambda path, x: x + 0.5 if "gate" in jax.tree_util.keystr(path) else x, params)
        a = _encode(model, opened, text, valid, images)
        b = _encode(model, opened, text, valid, -images)
        assert np.abs(np.asarray(a.memory[:, :T]) - np.asarray(b.memory[:, :T])).max() > 1e-4


def test_text_widths_are_projected_when_they_differ(tiny_config, tiny_batch):
    cfg = replace(tiny_config, text_encoder=dict(d_model=48, num_heads=4, mlp_dim=96))
    model, params = init_params(cfg)
    assert params["fusion"]["text_project"]["kernel"].shape == (48, cfg.fusion.d_model)
    enc = _encode(model, params, tiny_batch["text"], tiny_batch["text_valid"], tiny_batch["images"])
    assert enc.memory.shape[-1] == cfg.fusion.d_model


def test_fusion_needs_some_input(tiny_config):
    model, params = init_params(tiny_config)
    with pytest.raises(ValueError, match="text tokens, image tokens, or both"):
        model.apply({"params": params}, method=SoraModel.encode)


@pytest.mark.parametrize("mode", ["joint", "cross"])
def test_mixed_batch_example_without_image_matches_text_only(tiny_config, tiny_batch, mode):
    cfg = replace(tiny_config, fusion=dict(mode=mode))
    model, params = init_params(cfg)
    opened = jax.tree_util.tree_map_with_path(  # open cross-mode gates so the image could leak in
        lambda path, x: x + 0.5 if "gate" in jax.tree_util.keystr(path) else x, params)
    text, valid, images = tiny_batch["text"], tiny_batch["text_valid"], tiny_batch["images"]
    present = jnp.array([True, False])
    run = jax.jit(lambda p, *a: model.apply({"params": p}, *a, method=SoraModel.encode))
    mixed = run(opened, text, valid, images, present)
    text_only = run(opened, text, valid, None, None)
    T = text.shape[1]
    assert not bool(jnp.any(mixed.memory_valid[1, T:])) and bool(jnp.all(mixed.memory_valid[0, T:]))
    np.testing.assert_allclose(np.asarray(mixed.memory[1, :T]), np.asarray(text_only.memory[1]), atol=1e-5)
    np.testing.assert_allclose(np.asarray(mixed.pooled[1]), np.asarray(text_only.pooled[1]), atol=1e-5)
    assert np.abs(np.asarray(mixed.memory[0, :T]) - np.asarray(text_only.memory[0])).max() > 1e-4
