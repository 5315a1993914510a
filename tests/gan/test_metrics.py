"""GAN metrics against references: the Fréchet distance against scipy's matrix square root and
a closed form, PSNR by hand."""

import numpy as np
import pytest
import scipy.linalg

from sora_jax.gan.metrics import conditional_accuracy, frechet_distance, hole_psnr


def _scipy_fid(a, b):
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(ca @ cb).real
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(ca + cb - 2 * covmean))


def test_frechet_distance_matches_scipy_and_is_zero_for_the_same_set():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(400, 6)) * 1.5 + 0.3
    assert frechet_distance(a, b) == pytest.approx(_scipy_fid(a, b), rel=1e-6)
    assert abs(frechet_distance(a, a)) < 1e-8


def test_frechet_distance_of_diagonal_gaussians_in_closed_form():
    # Exact moments: N(mu, diag(s^2)) vs N(0, I): |mu|^2 + sum (s - 1)^2, built from +-1 samples.
    signs = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], np.float64)
    a = np.concatenate([signs] * 50)  # mean 0, covariance (N/(N-1)) I
    b = a * np.array([2.0, 3.0]) + np.array([1.0, -1.0])
    k = len(a) / (len(a) - 1)
    want = 2.0 + k * ((2 - 1) ** 2 + (3 - 1) ** 2)
    assert frechet_distance(b, a) == pytest.approx(want, rel=1e-9)
    with pytest.raises(ValueError, match="feature arrays"):
        frechet_distance(a, a[:, :1])


def test_conditional_accuracy_and_hole_psnr():
    assert conditional_accuracy([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75
    target = np.zeros((1, 2, 2, 1))
    generated = np.array([0.5, 0.0, 9.0, 0.0]).reshape(1, 2, 2, 1)
    known = np.array([0, 0, 1, 1], np.float64).reshape(1, 2, 2, 1)  # the 9.0 is a known pixel: ignored
    mse = (0.25 + 0.0) / 2
    assert hole_psnr(generated, target, known) == pytest.approx(10 * np.log10(4 / mse))
    assert hole_psnr(target, target, known) == float("inf")
