"""Host memory reuse (sora_jax/train/host_memory.py): after it, a program whose temporary buffer is
large no longer faults that buffer in again on every run; without it (glibc's default) it does.
Counted in page faults, not timed. Each case runs in a fresh process: malloc settings are
process-wide and must precede the runtime's threads."""

import json
import os
import subprocess
import sys

from sora_jax.train import host_memory

BUFFER_MB = 128

PROGRAM = f"""
import json, resource, sys
took = False
if sys.argv[1] == "reuse":
    from sora_jax.train import host_memory
    took = host_memory.reuse_freed_memory()
import jax, jax.numpy as jnp
x = jnp.ones((8192, 8)); w = jnp.ones((8, {BUFFER_MB} * 2 ** 20 // 4 // 8192)); w2 = jnp.ones((w.shape[1], 8))
f = jax.jit(lambda x, w, w2: (x @ w) @ w2)  # x @ w: a {BUFFER_MB} MB temporary
for _ in range(10):  # the heap settles within a few runs (small blocks may split the first holes)
    f(x, w, w2).block_until_ready()
faults = []
for _ in range(9):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x, w, w2).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps([took, sorted(faults)[len(faults) // 2]]))  # the median run
"""


def _run(mode):
    """(whether the settings took, the median run's page faults)."""
    env = dict(os.environ, XLA_FLAGS="")  # one CPU device, as a training process has
    out = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, env=env,
                         timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _bytes_per_fault():
    """4 KB pages; 2 MB where transparent huge pages are on for every mapping."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return 2 ** 21 if "[always]" in f.read() else 4096
    except OSError:
        return 4096


def test_a_large_temporary_buffer_is_not_faulted_in_again_on_every_run():
    buffer_bytes = BUFFER_MB * 2 ** 20
    took, reused = _run("reuse")
    # The settings are glibc's: elsewhere the call changes nothing and must say so.
    assert took == (host_memory._glibc() is not None)
    _, released = _run("release")
    # glibc's default maps the buffer afresh: every page of it faults in again on every run.
    assert released > 0.5 * buffer_bytes / _bytes_per_fault(), f"default: {released} faults per run"
    if took:
        # Measured: 0 once settled (an odd run may still fault the buffer in, hence the median).
        assert reused < 0.05 * buffer_bytes / 4096, f"{reused} page faults per run with reuse"


def test_it_reports_whether_the_settings_took(monkeypatch):
    monkeypatch.setattr(host_memory, "_glibc", lambda: None)
    assert host_memory.reuse_freed_memory() is False
