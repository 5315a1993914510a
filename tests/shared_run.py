"""A trained run shared by every pytest-xdist worker: the first worker to ask trains it (under a
file lock), the others wait and reuse it, so a slow fixture runs once per test session."""

import fcntl
import os


def shared_run(tmp_path_factory, name, train):
    """train(workdir) -> None (asserting success); returns the workdir, trained exactly once."""
    # Under xdist each worker's basetemp is pytest-N/popen-gwK: their parent is this session's
    # own. Without xdist the basetemp is pytest-N itself (its parent would be shared with every
    # earlier session, and a stale run trained by older code would be reused).
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    workdir = str(root / name)
    with open(str(root / f"{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not os.path.exists(workdir + ".done"):
                train(workdir)
                open(workdir + ".done", "w").close()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return workdir


def run_evaluate(workdir, step, env, root):
    """`python -m sora_jax.evaluate --max_batches=1` on a trained run: (completed process, results JSON)."""
    import json
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "sora_jax.evaluate", f"--workdir={workdir}", "--max_batches=1"],
                         cwd=root, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    with open(os.path.join(workdir, "eval", f"validation_step{step}_batches1.json")) as f:
        return out, json.load(f)
