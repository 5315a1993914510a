"""DiffAugment: each transform does what it says and lets gradients through."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sora_jax.gan.augment import _cutout, _translation, diff_augment


def test_translation_shifts_whole_images_with_zero_fill():
    x = jnp.arange(2 * 16 * 16 * 1, dtype=jnp.float32).reshape(2, 16, 16, 1) + 1
    out = np.asarray(_translation(x, jax.random.key(3)))
    for i in range(2):
        # Find the shift: the output equals the input moved by (dy, dx), zeros elsewhere.
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if np.array_equal(out[i, ..., 0], np.pad(np.asarray(x[i, ..., 0]), 2)[2 - dy:18 - dy, 2 - dx:18 - dx])]
        assert len(found) == 1


def test_cutout_zeroes_one_square_of_half_the_side():
    x = jnp.ones((4, 16, 16, 3))
    out = np.asarray(_cutout(x, jax.random.key(0)))
    for i in range(4):
        zero = out[i, ..., 0] == 0
        rows, cols = np.where(zero)
        assert zero.sum() > 0 and zero.sum() <= 64
        assert zero[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # one rectangle
        assert (out[i, ..., 0] == out[i, ..., 2]).all()


def test_the_policy_is_differentiable_and_unknown_names_fail():
    x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 3), minval=-1)
    g = jax.grad(lambda v: jnp.sum(diff_augment(v, jax.random.key(1), "color,translation,cutout") ** 2))(x)
    assert float(jnp.sum(jnp.abs(g))) > 0
    np.testing.assert_array_equal(diff_augment(x, jax.random.key(1), ""), x)
    with pytest.raises(ValueError, match="rotate"):
        diff_augment(x, jax.random.key(1), "rotate")
