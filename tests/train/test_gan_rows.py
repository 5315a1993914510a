"""The trainer's view of GAN rows: which rows of a mixed batch train the generator, what they
know of their image, and that their labels never train the classifier."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from sora_jax.data.schema import TASKS
from sora_jax.models import SoraModel, presets
from sora_jax.train import losses
from sora_jax.train.errors import ConfigurationError
from sora_jax.train.gan import make_gan_parts
from sora_jax.train.gan_eval import hole_metrics
from configs import base

T = {name: i for i, name in enumerate(TASKS)}


def gan_config(**gan):
    import dataclasses
    cfg = presets.tiny()
    g = dataclasses.replace(cfg.gan, enabled=True, image_size=16, inpaint=True, base_channels=8, max_channels=16,
                            **gan)
    return dataclasses.replace(cfg, gan=g)


def batch():
    rng = np.random.default_rng(0)
    task = np.asarray([T["lm"], T["t2i"], T["caption"], T["inpaint"], T["t2i"], T["classify"]], np.int32)
    mask = (rng.random((6, 16, 16, 1)) > 0.5).astype(np.float32)
    return {"task_id": jnp.asarray(task), "weight": jnp.asarray([1, 1, 1, 1, 0, 1], jnp.float32),
            "image": jnp.asarray(rng.normal(size=(6, 16, 16, 3)), jnp.float32),
            "text": jnp.ones((6, 8), jnp.int32), "text_valid": jnp.ones((6, 8), bool),
            "inpaint_mask": jnp.asarray(mask), "label": jnp.asarray([-1, 3, -1, 2, 1, 0], jnp.int32)}


def parts(rows=0, tasks=("t2i", "inpaint", "lm")):
    config = base.get_config()
    config.data.image_size, config.data.text_len = 16, 8
    with config.unlocked():
        config.gan.rows = rows
    return make_gan_parts(config, SoraModel(gan_config()), set(tasks))


def test_gan_rows_are_gathered_first_and_weighted():
    b = batch()
    sub = parts(rows=3).select(b)
    # The t2i row and the inpaint row, then a filler row of weight 0 (row 4, a t2i row of weight 0,
    # is padding, not a GAN example).
    np.testing.assert_array_equal(sub["weight"], [1, 1, 0])
    np.testing.assert_array_equal(sub["image"], b["image"][np.asarray([1, 3, 0])])
    np.testing.assert_array_equal(sub["known"][0], 0)  # text-to-image: nothing is known
    np.testing.assert_array_equal(sub["known"][1], 1 - b["inpaint_mask"][3])
    whole = parts().select(b)  # rows=0: the whole batch, in place
    np.testing.assert_array_equal(whole["weight"], [0, 1, 0, 1, 0, 0])


def test_generation_labels_do_not_train_the_classifier():
    b = batch()
    np.testing.assert_array_equal(losses.classified_rows(b), [False, False, False, False, False, True])
    assert float(losses.loss_denominators(b)[losses.CLASSIFY]) == 1.0


def test_the_data_and_the_generator_must_agree():
    with pytest.raises(ConfigurationError, match="model.gan.enabled"):
        make_gan_parts(base.get_config(), SoraModel(presets.tiny()), {"t2i"})
    with pytest.raises(ConfigurationError, match="gan.rows"):
        parts(rows=999)
    config = base.get_config()
    config.data.image_size, config.data.text_len = 16, 8
    config.gan.r1_schedule = "sometimes"
    with pytest.raises(ConfigurationError, match="gan.r1_schedule"):
        make_gan_parts(config, SoraModel(gan_config()), {"t2i"})
    config.gan.r1_schedule, config.gan.lr_schedule = "auto", "linear"
    with pytest.raises(ConfigurationError, match="gan.lr_schedule"):
        make_gan_parts(config, SoraModel(gan_config()), {"t2i"})
    config.gan.lr_schedule, config.gan.contrastive_weight = "constant", 1.0  # the generator has no heads
    with pytest.raises(ConfigurationError, match="gan.contrastive_weight"):
        make_gan_parts(config, SoraModel(gan_config()), {"t2i"})


def test_the_cosine_schedule_takes_both_gan_learning_rates_to_zero():
    from sora_jax.train.gan import learning_rate
    cosine = learning_rate(1e-3, "cosine", 100)
    assert float(cosine(0)) == pytest.approx(1e-3)
    assert float(cosine(50)) == pytest.approx(0.5e-3)
    assert float(cosine(100)) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(1e-3, "constant", 100) == 1e-3
    import dataclasses
    config = base.get_config()
    config.data.image_size = 16
    t2i_only = SoraModel(dataclasses.replace(gan_config(), gan=dataclasses.replace(gan_config().gan, inpaint=False)))
    with pytest.raises(ConfigurationError, match="model.gan.inpaint"):
        make_gan_parts(config, t2i_only, {"inpaint"})


def test_hole_metrics_against_numpy():
    rng = np.random.default_rng(1)
    original = rng.uniform(-1, 1, (2, 4, 4, 3))
    known = np.zeros((2, 4, 4, 1))
    known[:, :2] = 1  # the top half is given
    completed = original + 0.1 * (1 - known)
    m = hole_metrics(completed, original, known)
    assert m["gan/hole_l1"] == pytest.approx(0.1)
    assert m["gan/hole_psnr"] == pytest.approx(10 * np.log10(4 / 0.01))
    mean = original[:, :2].mean(axis=(1, 2), keepdims=True)
    assert m["gan/mean_fill_hole_l1"] == pytest.approx(np.abs(original[:, 2:] - mean).mean())
    assert m["gan/hole_l1_ratio"] == pytest.approx(0.1 / m["gan/mean_fill_hole_l1"])
