"""Each public package imports on its own, as the first sora_jax import of a fresh interpreter
(a user reusing `sora_jax.gan` in their own code). `from sora_jax.gan import Generator` used to
fail with a circular import (gan.config -> models -> models.config -> gan.config) whenever
nothing had imported `sora_jax.models` first, which broke `benchmarks/gan_step.py`."""

import subprocess
import sys

import pytest

PACKAGES = ["sora_jax.gan", "sora_jax.models", "sora_jax.nn", "sora_jax.data", "sora_jax.train", "sora_jax.infer",
            "sora_jax.eval", "sora_jax.interop", "sora_jax.reporting", "sora_jax.errors"]


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_first_in_a_fresh_interpreter(package):
    result = subprocess.run([sys.executable, "-c", f"import {package}"], capture_output=True, text=True,
                            env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_gan_config_error_is_the_model_config_error():
    from sora_jax.gan.config import ConfigError as gan_error
    from sora_jax.models import ConfigError
    from sora_jax.models.errors import ConfigError as models_error

    assert gan_error is ConfigError is models_error
