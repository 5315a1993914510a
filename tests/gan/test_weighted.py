"""Row weights in the GAN losses: a weighted loss over a mixed batch equals the plain loss over
the GAN rows alone, so GAN rows can share a batch with text rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sora_jax.gan import discriminator_loss, generator_loss, hole_l1, r1_penalty

RNG = np.random.default_rng(0)
REAL, FAKE = jnp.asarray(RNG.normal(size=8)), jnp.asarray(RNG.normal(size=8))
ROWS = jnp.asarray([1, 0, 1, 1, 0, 0, 1, 1], jnp.float32)
KEEP = np.flatnonzero(np.asarray(ROWS))


@pytest.mark.parametrize("kind", ["hinge", "logistic"])
def test_weighted_losses_equal_the_losses_of_the_kept_rows(kind):
    weights = ROWS / ROWS.sum()
    np.testing.assert_allclose(discriminator_loss(kind, REAL, FAKE, weights),
                               discriminator_loss(kind, REAL[KEEP], FAKE[KEEP]), rtol=1e-6)
    np.testing.assert_allclose(generator_loss(kind, FAKE, weights), generator_loss(kind, FAKE[KEEP]), rtol=1e-6)
    # Separate weights for the fake term (matching-aware pairs that differ).
    other = jnp.asarray([0, 0, 1, 1, 0, 0, 0, 1], jnp.float32)
    expected = discriminator_loss(kind, REAL[KEEP], REAL[KEEP]) / 2 + discriminator_loss(
        kind, FAKE[np.flatnonzero(np.asarray(other))], FAKE[np.flatnonzero(np.asarray(other))]) / 2
    got = discriminator_loss(kind, REAL, REAL, weights) / 2 + discriminator_loss(kind, FAKE, FAKE,
                                                                                other / other.sum()) / 2
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_weighted_r1_and_hole_l1_equal_those_of_the_kept_rows():
    images = jnp.asarray(RNG.normal(size=(8, 4, 4, 3)), jnp.float32)
    w = jnp.asarray(RNG.normal(size=(4, 4, 3)), jnp.float32)

    def discriminate(x):
        return jnp.sum(jnp.tanh(x * w[None]), axis=(1, 2, 3))
    np.testing.assert_allclose(r1_penalty(discriminate, images, ROWS / ROWS.sum()),
                               r1_penalty(discriminate, images[KEEP]), rtol=1e-5)
    target = jnp.asarray(RNG.normal(size=(8, 4, 4, 3)), jnp.float32)
    known = jnp.asarray(RNG.random((8, 4, 4, 1)) > 0.5, jnp.float32)
    np.testing.assert_allclose(hole_l1(images, target, known, ROWS), hole_l1(images[KEEP], target[KEEP], known[KEEP]),
                               rtol=1e-6)
    # Under pmap the global count of hole values is given: a local batch then scales by it.
    values = jnp.sum((1 - known[KEEP])) * 3
    np.testing.assert_allclose(hole_l1(images, target, known, ROWS, 2 * values),
                               hole_l1(images[KEEP], target[KEEP], known[KEEP]) / 2, rtol=1e-6)
    assert jax.grad(lambda x: hole_l1(x, target, known, ROWS))(images)[1].sum() == 0  # a dropped row
