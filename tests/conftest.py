"""Test settings: 8 fake CPU devices (set before jax is imported), strict rank promotion,
shared keys and tiny configs."""

import os

# Level 0 backend optimisation: tests are dominated by compile time on 2 cores, not run time.
os.environ["XLA_FLAGS"] = " ".join(
    [f for f in os.environ.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f]
    + ["--xla_force_host_platform_device_count=8", "--xla_backend_optimization_level=0"])
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

from sora_jax.models import presets  # noqa: E402


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def tiny_config():
    return presets.tiny()


def make_batch(cfg, batch=2, text_len=8, dec_len=8, seed=0):
    """Random inputs matching a SoraConfig: text ids with right padding, images, decoder ids."""
    rng = np.random.default_rng(seed)
    text = rng.integers(1, cfg.text_encoder.vocab_size, (batch, text_len)).astype(np.int32)
    lengths = np.maximum(1, text_len - np.arange(batch) * 3)
    text_valid = np.arange(text_len)[None, :] < lengths[:, None]
    text = np.where(text_valid, text, 0)
    size, ch = cfg.image_encoder.image_size, cfg.image_encoder.in_channels
    images = rng.uniform(-1, 1, (batch, size, size, ch)).astype(np.float32)
    dec = rng.integers(1, cfg.decoder.vocab_size, (batch, dec_len)).astype(np.int32)
    return dict(text=jnp.asarray(text), text_valid=jnp.asarray(text_valid), images=jnp.asarray(images),
                dec=jnp.asarray(dec))


@pytest.fixture
def tiny_batch(tiny_config):
    return make_batch(tiny_config)
