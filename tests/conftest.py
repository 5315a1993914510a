"""Test settings: 8 fake CPU devices (set before jax is imported), strict rank promotion,
shared keys and tiny configs."""

import os

# Level 0 backend optimisation: tests are dominated by compile time on 2 cores, not run time.
# Generous collective timeouts: 8 fake devices on 2 busy cores can wait long at a rendezvous,
# and XLA's default stuck-collective timeout aborts the process.
os.environ["XLA_FLAGS"] = " ".join(
    [f for f in os.environ.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f]
    + ["--xla_force_host_platform_device_count=8", "--xla_backend_optimization_level=0",
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


# Tests marked `isolated(attempts=N, timeout_s=T)` run in a fresh pytest process, retried when
# a run hangs past T seconds (with a warning) and failed clearly after N hangs: never a stuck CI
# job. For the one known XLA:CPU hang (see tests/train/helpers.py: tiny_model).
ISOLATED_CHILD = "SORA_ISOLATED_TEST_CHILD"


def pytest_configure(config):
    config.addinivalue_line("markers", "isolated(attempts, timeout_s): run in a fresh process, retried on a hang")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    marker = pyfuncitem.get_closest_marker("isolated")
    if marker is None or os.environ.get(ISOLATED_CHILD):
        return None
    import subprocess
    import sys
    import warnings
    attempts, timeout_s = marker.kwargs.get("attempts", 3), marker.kwargs.get("timeout_s", 300)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", pyfuncitem.nodeid]
    for attempt in range(1, attempts + 1):
        try:
            done = subprocess.run(cmd, cwd=root, env={**os.environ, ISOLATED_CHILD: "1"}, capture_output=True,
                                  text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            warnings.warn(f"{pyfuncitem.nodeid} hung for {timeout_s} s (attempt {attempt} of {attempts})")
            continue
        if done.returncode != 0:
            pytest.fail(f"isolated run failed:\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}", pytrace=False)
        return True
    pytest.fail(f"{pyfuncitem.nodeid} hung {attempts} times for {timeout_s} s", pytrace=False)
