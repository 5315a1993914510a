"""Test settings: 8 fake CPU devices (set before jax is imported), strict rank promotion,
shared keys and tiny configs."""

import functools
import os
import shutil
import tempfile

from tests.compile_flags import FAST_COMPILE

# Quick compiles (compile_flags.py): tests are dominated by compile time on 2 cores, not run time.
# Generous collective timeouts: 8 fake devices on 2 busy cores can wait long at a rendezvous,
# and XLA's default stuck-collective timeout aborts the process.
os.environ["XLA_FLAGS"] = " ".join(
    [f for f in os.environ.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f]
    + ["--xla_force_host_platform_device_count=8", *FAST_COMPILE,
       "--xla_cpu_collective_call_terminate_timeout_seconds=900", "--xla_cpu_collective_timeout_seconds=900",
       "--xla_cpu_collective_call_warn_stuck_timeout_seconds=300"])
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
# One program at a time: with 8 fake devices on 2 cores, two sharded programs in flight can
# starve each other's collectives of threads and deadlock (seen as rare hangs).
jax.config.update("jax_cpu_enable_async_dispatch", False)

from sora_jax.models import presets  # noqa: E402
from sora_jax.train import compile_cache  # noqa: E402
from tests.batches import make_batch  # noqa: E402,F401  (re-exported for tests)

# One persistent compilation cache per test session, shared by the xdist workers (the controller
# makes it before they start, so they inherit the variable): the suite's time is mostly XLA
# compiling, and many tests compile the same program (the tiny model's init and train step on
# the same mesh). SORA_JAX_TEST_COMPILE_CACHE=DIR keeps it between sessions; =off compiles all in
# the tests' own processes (the trainers they start still share a temporary cache).
CACHE_VARIABLE = "SORA_JAX_TEST_COMPILE_CACHE"


def pytest_configure(config):
    if not os.environ.get(CACHE_VARIABLE):
        os.environ[CACHE_VARIABLE] = config.stash[_owned_cache] = tempfile.mkdtemp(prefix="sora_jax_test_xla_")
    if os.environ[CACHE_VARIABLE] != "off":
        compile_cache.enable(os.environ[CACHE_VARIABLE], 4096)
    # The trainers the tests start as subprocesses cache their programs under $XDG_CACHE_HOME
    # (configs/base.py; it must be absolute): in this session's cache, never the user's ~/.cache.
    # With the cache off, in a temporary directory that the controlling process (the one without
    # the marker in its environment: xdist's workers inherit it) makes and removes. This moves
    # other programs' caches too (matplotlib's fonts, chromium's): nothing here relies on them.
    if os.environ[CACHE_VARIABLE] != "off":
        os.environ["XDG_CACHE_HOME"] = os.path.join(os.path.abspath(os.environ[CACHE_VARIABLE]), "xdg")
    elif os.environ.get("XDG_CACHE_HOME", "").find("sora_jax_test_xdg_") < 0:
        os.environ["XDG_CACHE_HOME"] = config.stash[_owned_xdg] = tempfile.mkdtemp(prefix="sora_jax_test_xdg_")


def pytest_unconfigure(config):
    for owned in (_owned_cache, _owned_xdg):
        if owned in config.stash:
            shutil.rmtree(config.stash[owned], ignore_errors=True)


_owned_cache = pytest.StashKey[str]()
_owned_xdg = pytest.StashKey[str]()


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def tiny_config():
    return presets.tiny()


@pytest.fixture
def tiny_batch(tiny_config):
    return make_batch(tiny_config)


@pytest.fixture
def optimized_compiles(monkeypatch):
    """For the few tests whose time goes to running hundreds of steps, not to compiling: what they
    jit compiles at XLA's full optimisation instead of the suite's level 0 (the digit judge's
    300 training steps: 48 -> 14 s in the suite; every compile-bound test measured got slower, 1.2-3x)."""
    monkeypatch.setattr(jax, "jit", functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 3}))
