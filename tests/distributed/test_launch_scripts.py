"""The cluster launch files cannot run here: they are syntax-checked and their wiring is checked
against the trainer's flags; the local ones check their arguments."""

import glob
import os
import subprocess
import time

import pytest
import yaml

from tests.train.test_cli import ROOT

SCRIPTS = sorted(glob.glob(os.path.join(ROOT, "launch", "*.sh")) + [os.path.join(ROOT, "launch", "slurm.sbatch")])


@pytest.mark.parametrize("path", SCRIPTS, ids=os.path.basename)
def test_scripts_parse_and_are_executable(path):
    assert subprocess.run(["bash", "-n", path], capture_output=True).returncode == 0
    assert os.access(path, os.X_OK)


def test_jobset_wires_every_pod_to_the_coordinator():
    with open(os.path.join(ROOT, "launch", "k8s", "jobset.yaml")) as f:
        jobset = yaml.safe_load(f)
    assert jobset["kind"] == "JobSet" and jobset["spec"]["network"]["enableDNSHostnames"]
    replicated = jobset["spec"]["replicatedJobs"][0]
    job = replicated["template"]["spec"]
    assert job["completionMode"] == "Indexed" and job["parallelism"] == job["completions"]
    command = job["template"]["spec"]["containers"][0]["command"]
    flags = dict(arg.split("=", 1) for arg in command if arg.startswith("--"))
    assert int(flags["--config.distributed.num_processes"]) == job["completions"]
    assert flags["--config.distributed.process_id"] == "$(JOB_COMPLETION_INDEX)"
    # Pod 0 of job 0 of the replicated job, under the JobSet's headless service.
    host = f"{jobset['metadata']['name']}-{replicated['name']}-0-0.{jobset['metadata']['name']}"
    assert flags["--config.distributed.coordinator_address"].startswith(host + ":")


def test_slurm_script_lets_jax_read_the_cluster():
    with open(os.path.join(ROOT, "launch", "slurm.sbatch")) as f:
        text = f.read()
    assert "srun --kill-on-bad-exit=1" in text and "--config.distributed.initialize=yes" in text


@pytest.mark.parametrize("args, message", [
    (["local.sh", "configs/demo.py"], "usage:"),
    (["local.sh", "configs/demo.py", "/tmp/x", "--fake_devices=0"], "--fake_devices"),
    (["multiprocess.sh", "two", "configs/demo.py", "/tmp/x"], "usage:"),
    (["multiprocess.sh", "2", "configs/demo.py", "/tmp/x", "--devices_per_process=a"], "--devices_per_process"),
])
def test_local_scripts_reject_bad_arguments(args, message):
    out = subprocess.run(["bash", os.path.join(ROOT, "launch", args[0]), *args[1:]], capture_output=True, text=True)
    assert out.returncode == 2 and message in out.stderr


def test_local_scripts_take_relative_paths_from_the_callers_directory(tmp_path):
    """The scripts run the trainer from the repository; a relative WORKDIR, and a CONFIG file
    named from the caller's directory, still mean the caller's."""
    from tests.train.test_cli import ENV

    with open(os.path.join(ROOT, "configs", "base.py")) as f:
        (tmp_path / "mine.py").write_text(f.read())
    local = subprocess.run(["bash", os.path.join(ROOT, "launch", "local.sh"), "mine.py", "missing/run"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300, env=ENV)
    assert local.returncode == 2, local.stderr[-2000:]  # the config was found; the workdir's parent is not there
    assert f"--workdir: parent directory {tmp_path}/missing does not exist" in local.stderr
    several = subprocess.run(["bash", os.path.join(ROOT, "launch", "multiprocess.sh"), "2", "mine.py", "run",
                              "--config.train.num_stepz=1"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=300, env=ENV)
    assert several.returncode == 2, several.stderr[-2000:]
    assert "num_stepz" in (tmp_path / "run" / "logs" / "process_1.log").read_text()  # where the caller asked
    # Process 0's log is written by tee, which may still be flushing when the launcher returns.
    log0 = tmp_path / "run" / "logs" / "process_0.log"
    for _ in range(100):
        if "num_stepz" in log0.read_text():
            break
        time.sleep(0.1)
    assert "num_stepz" in log0.read_text() or "num_stepz" in several.stdout
