"""Creating the train state: the shardings the backend already derived are reused, not re-traced."""

import jax
import numpy as np

from sora_jax.models import SoraModel
from sora_jax.train import init as init_lib
from sora_jax.train import optimizer
from sora_jax.train.backends import make_backend
from sora_jax.train.mesh import make_mesh
from sora_jax.train.partitioning import DEFAULT_RULES
from tests.train.helpers import SPEC, optim, tiny_model


def test_given_shardings_give_the_state_that_tracing_gives_without_tracing_again(monkeypatch):
    mesh = make_mesh((2, 2, 2), jax.devices()[:8])
    model, o = SoraModel(tiny_model()), optim("adamw", lr=1e-3)
    tx = optimizer.make_optimizer(o, 10)
    backend = make_backend("jit", model, tx, optimizer.learning_rate_schedule(o, 10), SPEC, mesh, DEFAULT_RULES, {})
    reference, reference_shardings = init_lib.create_state(model, tx, SPEC, mesh, DEFAULT_RULES, jax.random.key(3))

    derived = []
    real = init_lib.state_shardings
    monkeypatch.setattr(init_lib, "state_shardings", lambda *a, **k: derived.append(1) or real(*a, **k))
    state = backend.init(jax.random.key(3))
    assert not derived  # the backend's own shardings were used, not derived from another trace

    flat, flat_ref = jax.tree.leaves(state), jax.tree.leaves(reference)
    assert len(flat) == len(flat_ref) > 10
    for a, b in zip(flat, flat_ref):
        assert a.sharding.is_equivalent_to(b.sharding, a.ndim)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert any(not s.is_fully_replicated for s in jax.tree.leaves(reference_shardings))
