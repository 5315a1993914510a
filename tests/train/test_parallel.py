"""Sharded training gives the single-device numbers: every mesh layout, pmap, and gradient
accumulation (DESIGN.md section 5: XLA's CPU partitioner has silently miscomputed before)."""

import functools

import numpy as np
import pytest

from tests.train.helpers import max_abs_diff, optim, run_steps


@functools.lru_cache(maxsize=None)
def single_device(**kw):
    return run_steps((1, 1, 1), **kw)


@pytest.mark.parametrize("shape", [(8, 1, 1), (1, 8, 1), (2, 2, 2), (1, 2, 4)])
def test_every_mesh_layout_matches_one_device(shape):
    ref_losses, ref_params = single_device()
    losses, params = run_steps(shape)
    np.testing.assert_allclose(losses, ref_losses, rtol=2e-6, atol=2e-6)
    assert max_abs_diff(params, ref_params) < 2e-6


def test_unrolled_layers_on_a_mesh_match_one_device():
    ref_losses, ref_params = run_steps((1, 1, 1), scan_layers=False)
    losses, params = run_steps((2, 2, 2), scan_layers=False)
    np.testing.assert_allclose(losses, ref_losses, rtol=2e-6, atol=2e-6)
    assert max_abs_diff(params, ref_params) < 2e-6


def test_adamw_on_a_mesh_matches_one_device():
    o = optim("adamw", lr=1e-3, b1=0.9, weight_decay=0.1, clip_norm=1.0, eps=1e-6)
    ref_losses, ref_params = run_steps((1, 1, 1), o=o)
    losses, params = run_steps((2, 2, 2), o=o)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    assert max_abs_diff(params, ref_params) < 5e-5  # Adam normalises tiny gradient differences


def test_pmap_data_parallelism_matches_jit():
    ref_losses, ref_params = run_steps((8, 1, 1))
    losses, params = run_steps(backend="pmap")
    np.testing.assert_allclose(losses, ref_losses, rtol=2e-6, atol=2e-6)
    assert max_abs_diff(params, ref_params) < 2e-6


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 2, 2)])
def test_gradient_accumulation_equals_one_step_on_the_whole_batch(shape):
    ref_losses, ref_params = single_device()
    losses, params = run_steps(shape, microbatches=4)
    np.testing.assert_allclose(losses, ref_losses, rtol=2e-6, atol=2e-6)
    assert max_abs_diff(params, ref_params) < 2e-6
