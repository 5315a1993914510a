"""SIGTERM at the awkward moments, in-process so the timing is exact: right after a periodic
checkpoint (the step is already saved), right after a resume (ditto), and during a fresh run's
set-up (nothing to save). Both must exit 0 and
keep the checkpoint there is; tests/train/test_cli.py covers a signal at a random step."""

import importlib.util
import os
import signal

import orbax.checkpoint as ocp
import pytest

from sora_jax.train import checkpoint, loop
from tests.train.test_cli import ROOT, assert_identical


def base_config(num_steps):
    spec = importlib.util.spec_from_file_location("base_config", os.path.join(ROOT, "configs", "base.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config()
    c.data.batch_size, c.data.eval_batch_size = 8, 8
    c.train.num_steps, c.train.checkpoint_every, c.train.log_every = num_steps, 2, 2
    c.train.eval_batches, c.train.progress = 1, False
    return c


def saved_steps(workdir):
    return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())


def saved_params(workdir, step):
    return ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"))["params"]


@pytest.fixture
def sigterm_after_save_of(monkeypatch):
    """SIGTERM to this process as soon as the periodic checkpoint of the given step is written."""
    def arm(at_step):
        original = checkpoint.Checkpointer.save

        def save(self, step, *args, **kwargs):
            done = original(self, step, *args, **kwargs)
            if step == at_step:
                os.kill(os.getpid(), signal.SIGTERM)
            return done
        monkeypatch.setattr(checkpoint.Checkpointer, "save", save)
    return arm


def test_sigterm_right_after_a_checkpoint_and_right_after_a_resume(tmp_path, sigterm_after_save_of, monkeypatch,
                                                                   caplog):
    workdir = str(tmp_path / "w")
    handler_before = signal.getsignal(signal.SIGTERM)
    sigterm_after_save_of(4)
    caplog.set_level("INFO", logger="sora_jax")
    assert loop.train(base_config(100), workdir) == 0
    assert saved_steps(workdir) == [2, 4]  # step 4 was saved once, by the periodic save
    assert "stopped by signal" in caplog.text and "at step 4" in caplog.text
    params = saved_params(workdir, 4)

    # Resumed at step 4 and stopped before its first step: the step-4 checkpoint stands.
    monkeypatch.undo()
    original_install = loop._StopFlag.install

    def install_then_signal(self, *args):  # the first install is at the start of set-up
        original_install(self, *args)
        os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(loop._StopFlag, "install", install_then_signal)
    caplog.clear()
    assert loop.train(base_config(100), workdir) == 0
    assert "resumed from step 4" in caplog.text and "at step 4" in caplog.text
    assert saved_steps(workdir) == [2, 4]
    assert_identical(saved_params(workdir, 4), params)
    assert signal.getsignal(signal.SIGTERM) == handler_before  # the training loop put it back

    # A fresh run pre-empted while setting up: exit 0 before the first step, nothing to save.
    caplog.clear()
    fresh = str(tmp_path / "fresh")
    assert loop.train(base_config(100), fresh) == 0
    assert "at step 0" in caplog.text and saved_steps(fresh) == []
    assert signal.getsignal(signal.SIGTERM) == handler_before
