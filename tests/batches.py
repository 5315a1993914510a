"""Random model inputs shared by tests (importing this has no side effects, unlike conftest)."""

import jax.numpy as jnp
import numpy as np


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
