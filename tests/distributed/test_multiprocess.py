"""Multi-process training on localhost through the launch scripts: two processes with two fake
CPU devices each (jax.distributed, gloo collectives) against one process with four. Same losses,
checkpoints that resume across process counts, process 0 alone writing metrics, and a killed
process stopping the job in bounded time with its last checkpoint intact."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.compile_flags import FAST_COMPILE
from tests.shared_run import shared_run
from tests.train.test_cli import ENV, ROOT

# The demo's text tasks, a few steps, with every process reading the same global batches.
CONFIG = "tests/distributed/text_mixture_config.py"
DEMO = ["--config.data.num_workers=0", "--config.data.process_layout=global", "--config.train.log_every=1",
        "--config.train.checkpoint_every=2", "--config.train.eval_every=0", "--config.train.eval_batches=1",
        "--config.train.progress=False", "--config.distributed.heartbeat_timeout_s=10"]
# The scripts choose the device counts; the tests' compile-speed flags stay.
CLEAN_ENV = {**{k: v for k, v in ENV.items() if k != "JAX_PLATFORMS"}, "XLA_FLAGS": " ".join(FAST_COMPILE)}


def launch(script, *args, timeout=600):
    out = subprocess.run(["bash", os.path.join(ROOT, "launch", script), *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=timeout, env=CLEAN_ENV)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


def two_processes(workdir, *overrides):
    return launch("multiprocess.sh", "2", CONFIG, workdir, "--devices_per_process=2", *DEMO, *overrides)


def one_process(workdir, *overrides):
    return launch("local.sh", CONFIG, workdir, "--fake_devices=4", *DEMO, *overrides)


def metrics(workdir, split="train"):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["split"] == split]


def losses(workdir, steps):
    by_step = {r["step"]: r["loss"] for r in metrics(workdir)}
    return np.asarray([by_step[s] for s in steps])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four steps in 2 processes and in 1, then each resumed to six steps in the other layout."""
    def train(root):
        os.makedirs(root)
        two_processes(f"{root}/two", "--config.train.num_steps=4")
        one_process(f"{root}/one", "--config.train.num_steps=4")
        one_process(f"{root}/two", "--config.train.num_steps=6")  # written by 2 processes, resumed by 1
        two_processes(f"{root}/one", "--config.train.num_steps=6")  # and the reverse
    root = shared_run(tmp_path_factory, "multiprocess_runs", train)
    return f"{root}/two", f"{root}/one"


def test_two_processes_train_to_the_losses_of_one(runs):
    two, one = runs
    np.testing.assert_allclose(losses(two, range(1, 5)), losses(one, range(1, 5)), rtol=1e-5)
    eval_two, eval_one = metrics(two, "eval")[0], metrics(one, "eval")[0]
    assert eval_two["step"] == eval_one["step"] == 4
    for key in (k for k in eval_one if "/loss/" in k):
        assert eval_two[key] == pytest.approx(eval_one[key], rel=1e-5), key


def test_checkpoints_resume_across_process_counts(runs):
    two, one = runs
    # Both continuations saw the same batches from the same state: 2 -> 1 and 1 -> 2 agree.
    np.testing.assert_allclose(losses(two, (5, 6)), losses(one, (5, 6)), rtol=1e-5)
    assert [r["step"] for r in metrics(two)] == [1, 2, 3, 4, 5, 6]  # one line per step: no gaps, no repeats


def test_only_process_zero_writes_metrics_and_every_process_writes_shards(runs):
    two, _ = runs
    assert len(os.listdir(os.path.join(two, "tb"))) == 2  # one per run (2 processes, then 1), not per process
    state = os.path.join(two, "checkpoints", "4", "state")
    assert {"ocdbt.process_0", "ocdbt.process_1"} <= set(os.listdir(state))
    assert os.path.exists(os.path.join(two, "logs", "process_1.log"))


def test_changing_the_data_layout_is_refused_with_one_line(runs):
    two, _ = runs
    out = subprocess.run(["bash", "launch/local.sh", CONFIG, two, *DEMO,
                          "--config.data.process_layout=per_process"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env=CLEAN_ENV)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "process_layout global -> per_process" in out.stderr
    assert len([line for line in out.stderr.splitlines() if line.startswith("error:")]) == 1


def test_a_killed_process_stops_the_job_and_the_last_checkpoint_restores(runs, tmp_path):
    _, one = runs
    workdir = str(tmp_path / "killed")
    subprocess.run(["cp", "-r", one, workdir], check=True)
    proc = subprocess.Popen(["bash", "launch/multiprocess.sh", "2", CONFIG, workdir,
                             "--devices_per_process=2", *DEMO, "--config.train.num_steps=100000"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=CLEAN_ENV,
                            start_new_session=True)
    try:
        checkpoint = os.path.join(workdir, "checkpoints", "8", "commit_success.txt")
        deadline = time.time() + 300
        while not os.path.exists(checkpoint) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert os.path.exists(checkpoint), "no checkpoint at step 8"
        pid = int(subprocess.run(["pgrep", "-f", f"workdir={workdir} .*process_id=1"], capture_output=True,
                                 text=True).stdout.split()[0])
        os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0 and time.time() - killed_at < 60
    assert "process 1 exited with code" in stderr
    from sora_jax.infer.run import load_run
    run = load_run(workdir)  # the newest complete checkpoint restores
    assert run.step >= 8
