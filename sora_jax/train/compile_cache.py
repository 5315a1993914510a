"""JAX's persistent compilation cache, so that a restarted or repeated run skips XLA compilation
(about half of a small run's start-up on CPU, minutes for large models on accelerators)."""

from __future__ import annotations

import os

import jax

from sora_jax.train.errors import ConfigurationError


def enable(directory: str, max_mb: int) -> str | None:
    """Compiled programs are stored in and read from `directory` ("" turns the cache off). A size
    limit turns on JAX's LRU eviction, which also takes a file lock around every read and write,
    so processes sharing the directory never read a half-written entry. Returns the path used."""
    if not directory:
        return None
    if max_mb <= 0:
        raise ConfigurationError(f"config key train.compilation_cache_max_mb: must be > 0, got {max_mb}")
    path = os.path.abspath(os.path.expanduser(directory))
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ConfigurationError(f"config key train.compilation_cache_dir: cannot create {path}: {e.strerror}") from e
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_compilation_cache_max_size", max_mb * 2 ** 20)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)  # the train and eval steps, not tiny ops
    return path
