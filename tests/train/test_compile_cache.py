"""The persistent compilation cache: a second process reuses what the first compiled."""

import os
import subprocess
import sys
import textwrap

import pytest

from sora_jax.train import compile_cache
from sora_jax.train.errors import ConfigurationError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROGRAM = textwrap.dedent("""
    import sys, jax, jax.numpy as jnp
    from sora_jax.train import compile_cache
    hits = []
    jax.monitoring.register_event_listener(lambda event, **kw: hits.append(event) if "cache_hits" in event else None)
    compile_cache.enable(sys.argv[1], 64)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # cache even this small program
    f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum())
    print(float(f(jnp.arange(64.0).reshape(8, 8) / 64)), len(hits))
""")


def run_program(cache_dir):
    done = subprocess.run([sys.executable, "-c", PROGRAM, str(cache_dir)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    value, hits = done.stdout.split()
    return value, int(hits)


def test_a_second_process_reads_what_the_first_compiled(tmp_path):
    cache = tmp_path / "xla"
    first_value, first_hits = run_program(cache)
    entries = [name for name in os.listdir(cache) if name.endswith("-cache")]
    assert first_hits == 0 and entries, os.listdir(cache)
    second_value, second_hits = run_program(cache)
    assert second_hits >= 1 and second_value == first_value
    assert sorted(name for name in os.listdir(cache) if name.endswith("-cache")) == sorted(entries)


def test_off_and_bad_settings():
    assert compile_cache.enable("", 64) is None
    with pytest.raises(ConfigurationError, match="train.compilation_cache_max_mb: must be > 0"):
        compile_cache.enable("/tmp/anything", 0)


def test_an_uncreatable_directory_names_the_key(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigurationError, match="train.compilation_cache_dir: cannot create"):
        compile_cache.enable(str(blocker / "sub"), 64)


def test_the_default_directory_follows_xdg_cache_home(monkeypatch, tmp_path):
    from configs import base
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert base.get_config().train.compilation_cache_dir == str(tmp_path / "sora_jax" / "jax")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the XDG rule: a relative path is ignored
    assert base.get_config().train.compilation_cache_dir == "~/.cache/sora_jax/jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert base.get_config().train.compilation_cache_dir == "~/.cache/sora_jax/jax"


def test_trainers_run_by_the_suite_cache_in_its_temporary_directory_not_the_users_home():
    """Before, every trainer a test started wrote its compiled programs to ~/.cache/sora_jax/jax
    (34 MB after one session), and the suite's speed depended on what earlier sessions left there."""
    import tempfile

    from configs import base
    from tests.conftest import CACHE_VARIABLE
    from tests.train.test_cli import ENV
    cache = os.path.realpath(ENV["XDG_CACHE_HOME"])
    session = os.environ[CACHE_VARIABLE]  # a temporary directory unless the caller chose one
    homes = [os.path.realpath(session)] if session != "off" else [os.path.realpath(tempfile.gettempdir())]
    assert any(cache.startswith(home + os.sep) for home in homes), (cache, homes)
    assert base.get_config().train.compilation_cache_dir.startswith(ENV["XDG_CACHE_HOME"])
