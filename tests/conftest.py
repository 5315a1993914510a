"""Test settings: 8 fake CPU devices (set before jax is imported), strict rank promotion,
shared keys and tiny configs."""

import os

# Level 0 backend optimisation: tests are dominated by compile time on 2 cores, not run time.
os.environ["XLA_FLAGS"] = " ".join(
    [f for f in os.environ.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f]
    + ["--xla_force_host_platform_device_count=8", "--xla_backend_optimization_level=0"])
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

from sora_jax.models import presets  # noqa: E402
from tests.batches import make_batch  # noqa: E402,F401  (re-exported for tests)


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def tiny_config():
    return presets.tiny()


@pytest.fixture
def tiny_batch(tiny_config):
    return make_batch(tiny_config)
