"""The training command end to end: bad input, kill -9 and resume, SIGTERM, corrupt checkpoints,
non-finite policies. Each test runs `python -m sora_jax.main` in a subprocess."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.compile_flags import FAST_COMPILE

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Small and quick, with dropout so that the per-step randomness matters for resuming.
FAST = ["--config=configs/base.py", "--config.data.batch_size=8", "--config.train.log_every=5",
        "--config.train.eval_batches=1", "--config.model.decoder.dropout_rate=0.1", "--config.train.progress=False"]


# One CPU device: the sharded paths are covered in-process (test_parallel.py); here speed matters.
ENV = {**os.environ, "XLA_FLAGS": " ".join(FAST_COMPILE)}


def command(workdir, *overrides):
    return [sys.executable, "-m", "sora_jax.main", f"--workdir={workdir}", *FAST, *overrides]


def run(workdir, *overrides, timeout=600):
    return subprocess.run(command(workdir, *overrides), cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=ENV)


def final_params(workdir):
    ckpt = os.path.join(workdir, "checkpoints")
    step = max(int(d) for d in os.listdir(ckpt) if d.isdigit())
    restored = ocp.StandardCheckpointer().restore(os.path.join(ckpt, str(step), "state"))
    return step, restored["params"]


def assert_identical(a, b):
    import jax
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def truncate_files(folder):
    """Every file of more than 64 bytes under folder cut to half: a torn write."""
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if os.path.getsize(path) > 64:
                with open(path, "r+b") as f:
                    f.truncate(os.path.getsize(path) // 2)


def wait_for_checkpoint(workdir, proc, timeout=300):
    ckpt = os.path.join(workdir, "checkpoints")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.isdir(ckpt) and any(d.isdigit() for d in os.listdir(ckpt)):
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended before its first checkpoint: {proc.stderr.read()[-2000:]}")
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.parametrize("flags,message", [
    (["--config.train.num_stepz=3"], '--config.train.num_stepz: config key \'num_stepz\' Did you mean "num_steps"'),
    (["--config.train.num_steps=many"], "--config.train.num_steps=many"),
    (["--config.mesh.shape=(3,1,1)"], "config key mesh.shape: (3, 1, 1) needs 3 devices; this run has 1"),
    (["--config.model.decoder.num_heads=3"], "model.decoder.num_heads: d_model 32 is not divisible by num_heads 3"),
    (["--config.data.name=shape"], "unknown dataset 'shape'"),
    (["--config=configs/nope.py"], "No such file or directory: 'configs/nope.py'"),
    (["--config.train.nonfinite=abrt"], "config key train.nonfinite: must be one of ('skip', 'abort')"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, flags, message):
    done = run(tmp_path / "w", *flags)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last
    assert not (tmp_path / "w").exists()  # a run that never started leaves no workdir behind


def test_missing_workdir_parent_is_exit_code_2(tmp_path):
    done = run(tmp_path / "no" / "such" / "dir")
    assert done.returncode == 2 and "parent directory" in done.stderr.strip().splitlines()[-1]
    (tmp_path / "file").write_text("not a directory")
    for workdir, message in ((tmp_path / "file", "exists and is not a directory"),
                             (tmp_path / "file" / "w", f"{tmp_path / 'file'} is not a directory")):
        done = run(workdir)
        assert done.returncode == 2 and message in done.stderr.strip().splitlines()[-1], done.stderr[-2000:]
    assert (tmp_path / "file").read_text() == "not a directory"


@pytest.mark.parametrize("source,message", [
    ("def get_config(:\n    pass\n", "bad.py:1: syntax error"),
    ("import ml_collections\n\ndef get_config():\n    return undefined_name\n",
     "bad.py:4: NameError: name 'undefined_name' is not defined"),
    # ml_collections re-raises a ValueError as a new one with the whole traceback as its text
    ("def get_config():\n    return int('abc')\n", "bad.py:2: ValueError: invalid literal for int()"),
])
def test_a_config_file_that_fails_to_load_is_named_with_its_line(tmp_path, source, message):
    (tmp_path / "bad.py").write_text(source)
    done = run(tmp_path / "w", f"--config={tmp_path / 'bad.py'}")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: --config: "), done.stderr
    assert message in lines[0]


def test_from_run_names_a_torn_config_json_and_a_missing_argument(tmp_path):
    (tmp_path / "config.json").write_text('{"train": {"num_st')
    for arg, message in ((f":{tmp_path / 'config.json'}", f"{tmp_path / 'config.json'}:1: not JSON"),
                         ("", "configs/from_run.py needs the run's config.json")):
        done = run(tmp_path / "w", f"--config=configs/from_run.py{arg}")
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and message in lines[0], done.stderr


def test_a_config_json_given_as_the_config_file_points_to_from_run(tmp_path):
    (tmp_path / "config.json").write_text('{"train": {"num_steps": 3, "progress": true}}')
    done = run(tmp_path / "w", f"--config={tmp_path / 'config.json'}")
    assert done.returncode == 2, done.stderr
    assert f"--config=configs/from_run.py:{tmp_path / 'config.json'}" in done.stderr.strip().splitlines()[-1]


def test_kill_minus_9_then_resume_ends_bit_identical(tmp_path):
    steps = ["--config.train.num_steps=60", "--config.train.checkpoint_every=10"]
    reference = run(tmp_path / "ref", *steps, "--config.train.progress=True")
    assert reference.returncode == 0, reference.stderr[-3000:]
    # Not a terminal (a log file): no progress bar, a line every log_every steps instead.
    assert "step 5/60: loss " in reference.stderr and "step 60/60: loss " in reference.stderr
    assert "it/s" not in reference.stderr and "\r" not in reference.stderr
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(command(killed_dir, *steps), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    wait_for_checkpoint(killed_dir, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    done_steps = max(int(d) for d in os.listdir(killed_dir / "checkpoints") if d.isdigit())
    assert done_steps < 60, "the run finished before it could be killed; the test proves nothing"
    resumed = run(killed_dir, *steps)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from step {done_steps}" in resumed.stderr
    step_a, params_a = final_params(tmp_path / "ref")
    step_b, params_b = final_params(killed_dir)
    assert step_a == step_b == 60
    assert_identical(params_a, params_b)  # the data iterator and the per-step randomness resumed too
    lines = [json.loads(x) for x in open(killed_dir / "metrics.jsonl")]
    train_steps = [x["step"] for x in lines if x["split"] == "train"]
    assert train_steps == sorted(set(train_steps)) and train_steps[-1] == 60

    # A truncated newest checkpoint (its arrays and its JSON meta item alike) is reported and the
    # previous one is used.
    truncate_files(os.path.join(killed_dir, "checkpoints", "60"))
    again = run(killed_dir, *steps)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "could not be restored" in again.stderr and "resumed from step 50" in again.stderr
    # Orbax's abandoned reads of the torn checkpoint print nothing (they printed hundreds of tracebacks).
    assert "Traceback" not in again.stderr and "Event loop is closed" not in again.stderr, again.stderr[-3000:]
    assert os.path.isdir(str(killed_dir / "checkpoints") + ".unreadable")  # set aside, not deleted
    assert_identical(final_params(killed_dir)[1], params_a)

    # The finished run, run again from its own saved config: nothing to train, and its final
    # evaluation is not repeated.
    finished = subprocess.run([sys.executable, "-m", "sora_jax.main", f"--workdir={killed_dir}",
                               f"--config=configs/from_run.py:{killed_dir / 'config.json'}"], cwd=ROOT,
                              capture_output=True, text=True, timeout=600, env=ENV)
    assert finished.returncode == 0 and "evaluated already" in finished.stderr, finished.stderr[-3000:]
    evals = [json.loads(x)["step"] for x in open(killed_dir / "metrics.jsonl") if '"eval"' in x]
    assert evals.count(60) == 1

    # Another model in the same workdir: refused in one line, from the checkpoint's metadata,
    # before any array is read; the checkpoints stay.
    other = run(killed_dir, *steps, "--config.model.decoder.mlp_dim=48")
    assert other.returncode == 2
    assert other.stderr.strip().splitlines() == [other.stderr.strip()], other.stderr[-3000:]
    assert "does not fit this run" in other.stderr and "mlp" in other.stderr and "from_run.py" in other.stderr
    assert_identical(final_params(killed_dir)[1], params_a)


def test_sigterm_saves_the_current_step_and_exits_0(tmp_path):
    workdir = tmp_path / "w"
    proc = subprocess.Popen(command(workdir, "--config.train.num_steps=100000", "--config.train.checkpoint_every=50"),
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    wait_for_checkpoint(workdir, proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-3000:]
    steps = sorted(int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit())
    assert "stopped by signal" in stderr
    assert steps[-1] > 50 and steps[-1] % 50 != 0 or len(steps) > 1


@pytest.mark.parametrize("policy", ["skip", "abort"])
def test_non_finite_policies(tmp_path, policy):
    workdir = tmp_path / "w"
    # Step 6 is bad; step 7 evaluates, before the next log (10) or checkpoint (8) boundary.
    done = run(workdir, "--config.train.num_steps=10", "--config.train.checkpoint_every=4",
               "--config.train.eval_every=7", "--config.train.debug_nan_steps=(6,)",
               f"--config.train.nonfinite={policy}")
    steps = sorted(int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit())
    if policy == "skip":
        assert done.returncode == 0, done.stderr[-3000:]
        last = [json.loads(x) for x in open(workdir / "metrics.jsonl") if '"train"' in x][-1]
        assert last["nonfinite_skipped"] == 1 and np.isfinite(last["loss"])
        assert steps[-1] == 10
    else:
        assert done.returncode == 3
        assert "non-finite loss or gradients at step 6" in done.stderr.strip().splitlines()[-1]
        assert steps[-1] == 4  # nothing written after the bad step: no checkpoint, no eval of the broken state
        assert max(json.loads(x)["step"] for x in open(workdir / "metrics.jsonl")) < 6
