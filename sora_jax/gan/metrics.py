"""Image-generation metrics: Fréchet distance between feature distributions (FID with any
feature extractor), conditional accuracy, and PSNR / L1 on inpainting holes."""

from __future__ import annotations

import numpy as np


def frechet_distance(features_a, features_b) -> float:
    """|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) over [N, D] feature arrays (float64).

    Tr((S_a S_b)^(1/2)) is the sum of the square roots of the eigenvalues of
    S_a^(1/2) S_b S_a^(1/2), which is symmetric positive semi-definite, so no complex matrix
    square root is needed."""
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two [N >= 2, D] feature arrays of the same D, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    vals, vecs = np.linalg.eigh(cov_a)
    sqrt_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    middle = np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a)
    trace_sqrt = np.sum(np.sqrt(np.clip(middle, 0, None)))
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)


def conditional_accuracy(predicted_labels, prompted_labels) -> float:
    """Share of generated images that a classifier trained on real data assigns to the prompt's class."""
    predicted, prompted = np.asarray(predicted_labels), np.asarray(prompted_labels)
    return float(np.mean(predicted == prompted))


def hole_psnr(generated, target, known, max_value=2.0) -> float:
    """PSNR (dB) over the unknown pixels of images in [-1, 1] (peak-to-peak 2)."""
    hole = (1.0 - np.asarray(known, np.float64)) * np.ones_like(np.asarray(generated, np.float64))
    err = np.sum(hole * (np.asarray(generated, np.float64) - np.asarray(target, np.float64)) ** 2)
    mse = err / max(np.sum(hole), 1.0)
    return float("inf") if mse == 0 else float(10 * np.log10(max_value ** 2 / mse))
