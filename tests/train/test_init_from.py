"""`model.<part>.init_from`: the trainer starts a part of the Sora model from a Hugging Face
checkpoint, grafted into the sharded parameters at init, and records it in config.json."""

import json
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from sora_jax.interop.pretrained import import_bert, minilm_dir
from sora_jax.models import SoraModel, presets
from sora_jax.models.config import SoraConfig
from sora_jax.train import init_from, optimizer, xla_cpu
from sora_jax.train.backends import make_backend
from sora_jax.train.mesh import make_mesh
from sora_jax.train.partitioning import DEFAULT_RULES
from tests.train.helpers import SPEC, batches, optim
from tests.train.test_cli import ENV, ROOT, final_params

GPT2_DIR = os.path.join(ROOT, "tests", "interop", "data", "gpt2_tiny")


def _flat(tree):
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in
            jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]}


@pytest.mark.parametrize("backend, mesh_shape", [("jit", (2, 2, 2)), ("pmap", (8, 1, 1))])
def test_gpt2_grafted_into_a_captioning_decoder_on_its_shards(backend, mesh_shape):
    config = ml_collections.ConfigDict({"model": presets.config_dict("tiny")})
    config.model.decoder.init_from = GPT2_DIR
    pending = init_from.resolve(config)
    assert config.model.decoder.d_model == 48 and config.model.decoder.vocab_size == 97  # from its config.json
    assert config.model.decoder.cross_attention  # not architecture GPT-2 fixes: stays as configured
    mesh = make_mesh(mesh_shape, jax.devices()[:8])
    model_cfg = xla_cpu.avoid_collective_deadlocks(SoraConfig.from_dict(config.model), mesh)
    trees = init_from.load(pending, model_cfg)
    o = optim()
    be = make_backend(backend, SoraModel(model_cfg), optimizer.make_optimizer(o, 10),
                      optimizer.learning_rate_schedule(o, 10), SPEC, mesh, DEFAULT_RULES, {})
    fresh = be.init(jax.random.key(0))
    state = be.init(jax.random.key(0), pretrained=trees)
    ours, before, imported = _flat(be.host_state(state).params), _flat(be.host_state(fresh).params), \
        _flat({"decoder": trees["decoder"]})
    assert set(imported) < set(ours)
    for name, value in ours.items():
        if name in imported:
            np.testing.assert_array_equal(value, imported[name])
        else:  # other parts, and the decoder's cross-attention GPT-2 does not have, as freshly initialised
            np.testing.assert_array_equal(value, before[name])
    assert any("cross_attention" in name and "decoder" in name for name in ours if name not in imported)
    # Same placement as a fresh init, and training proceeds from there.
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(fresh.params)):
        assert a.sharding == b.sharding
    if backend == "jit":  # GPT-2's vocabulary (97) does not split over tensor=2: that dimension is replicated
        table = state.params["decoder"]["embedding"]["token_embed"]["embedding"]
        assert table.sharding.spec[0] is None and table.sharding.spec[1] == "fsdp"
    batch = dict(batches(1)[0])
    batch["decoder_inputs"] = batch["decoder_inputs"] % 97
    state, metrics = be.step(state, be.put_batch(batch), jax.random.key(1))
    assert np.isfinite(float(metrics["loss"]))


def _main(workdir, *overrides):
    cmd = [sys.executable, "-m", "sora_jax.main", f"--workdir={workdir}", *overrides]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=ENV)


def test_minilm_config_starts_from_the_checkpoint_and_records_it(tmp_path):
    workdir = str(tmp_path / "run")
    out = _main(workdir, "--config=configs/shapes_multitask_minilm.py", "--config.train.num_steps=1",
                "--config.train.eval_every=0", "--config.train.eval_batches=1", "--config.train.eval_generate_batches=0",
                "--config.data.batch_size=4", "--config.optim.learning_rate=0.0", "--config.train.progress=False")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "sets num_layers 2 -> 6, d_model 128 -> 384" in out.stderr
    with open(os.path.join(workdir, "config.json")) as f:
        recorded = json.load(f)["model"]["text_encoder"]
    assert recorded["init_from"] == minilm_dir()
    assert (recorded["d_model"], recorded["num_layers"], recorded["norm_position"]) == (384, 6, "post")
    # With a zero learning rate the step changes nothing: the checkpoint holds MiniLM exactly.
    _, params = final_params(workdir)
    _, minilm = import_bert(minilm_dir())
    saved, expected = _flat(params["text_encoder"]), _flat(minilm)
    assert saved.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(saved[name], expected[name])


@pytest.mark.parametrize("overrides, message", [
    (["--config.model.text_encoder.init_from=/no/such/dir"],
     "config key model.text_encoder.init_from: /no/such/dir: no such checkpoint folder"),
    ([f"--config.model.text_encoder.init_from={minilm_dir()}"],
     "config key data.tokenizer: model.text_encoder.init_from's weights need the checkpoint's own token ids"),
])
def test_bad_init_from_is_one_line_and_exit_2(tmp_path, overrides, message):
    out = _main(str(tmp_path / "run"), "--config=configs/base.py", *overrides)
    assert out.returncode == 2, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert message in last
    assert not os.path.exists(tmp_path / "run" / "checkpoints")
