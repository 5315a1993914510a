"""`python -m sora_jax.export` on a trained run: the file loads back into exactly the
checkpoint's parameters; bad input is one line and exit code 2."""

import json
import subprocess
import sys

import jax
import numpy as np

from sora_jax.infer.run import load_run
from sora_jax.interop.safetensors_io import load_params, read_metadata
from tests.infer.test_generate_text import caption_run  # noqa: F401  (the shared trained run)
from tests.train.test_cli import ENV, ROOT


def export(*flags):
    return subprocess.run([sys.executable, "-m", "sora_jax.export", *flags], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=ENV)


def test_export_round_trips_the_checkpoint(caption_run, tmp_path):  # noqa: F811
    out = export(f"--workdir={caption_run}", f"--out={tmp_path / 'all.safetensors'}")
    assert out.returncode == 0, out.stderr[-3000:]
    params = load_run(caption_run).state.params
    loaded = load_params(str(tmp_path / "all.safetensors"), like=params)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    meta = read_metadata(str(tmp_path / "all.safetensors"))
    assert meta["step"] == "30" and json.loads(meta["config"])["train"]["num_steps"] == 30
    part = export(f"--workdir={caption_run}", f"--out={tmp_path / 'dec.safetensors'}", "--part=decoder",
                  "--dtype=bfloat16")
    assert part.returncode == 0, part.stderr[-3000:]
    decoder = load_params(str(tmp_path / "dec.safetensors"), like=params["decoder"])
    assert jax.tree.structure(decoder) == jax.tree.structure(params["decoder"])


def test_bad_input_is_one_line_and_exit_code_2(caption_run, tmp_path):  # noqa: F811
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"seed": 0,\n}')
    (tmp_path / "folder").mkdir()
    for flags, message in [([f"--workdir={caption_run}", "--out=/nonexistent/x.safetensors"], "does not exist"),
                           ([f"--workdir={caption_run}x", f"--out={tmp_path / 'x'}"], "does not exist"),
                           ([f"--workdir={caption_run}", f"--out={tmp_path / 'x'}", "--part=nope"], "not one of"),
                           ([f"--workdir={caption_run}", f"--out={tmp_path / 'folder'}"],
                            f"--out: {tmp_path / 'folder'} is a directory"),
                           ([f"--workdir={broken}", f"--out={tmp_path / 'x'}"], f"{broken}/config.json:2: not JSON")]:
        out = export(*flags)
        assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "folder"]
