"""The compile-only planner: its per-device parameter bytes are the real shards of a run on 8
fake devices, collective traffic is read correctly from HLO, and the command reports and
checks its input."""

import subprocess
import sys

import jax
import pytest

from configs import base
from sora_jax.models.config import SoraConfig
from sora_jax.models.sora import SoraModel
from sora_jax.train import optimizer as optim_lib
from sora_jax.train.backends import JitBackend
from sora_jax.train.mesh import make_mesh
from sora_jax.train.partitioning import rules_from_config
from sora_jax.train.planner import collective_bytes, format_plan, plan
from sora_jax.data.loader import example_spec
from tests.train.test_cli import ENV, ROOT


def small_config():
    c = base.get_config()
    c.data.batch_size = 16
    return c


@pytest.fixture(scope="module")
def tiny_plan():
    return plan(small_config(), (2, 2, 2), device_memory_gb=1e-4, peak_tflops=1.0)


def test_per_device_parameter_bytes_match_a_real_sharded_state(tiny_plan):
    c = small_config()
    mesh = make_mesh((2, 2, 2), jax.devices()[:8])
    model = SoraModel(SoraConfig.from_dict(c.model))
    tx = optim_lib.make_optimizer(c.optim, 10)
    backend = JitBackend(model, tx, optim_lib.learning_rate_schedule(c.optim, 10), example_spec(c.data), mesh,
                         rules_from_config(c.mesh.rules), dict(microbatches=1))
    state = backend.init(jax.random.key(0))
    per_device = {}
    for leaf in jax.tree.leaves(state.params):
        for shard in leaf.addressable_shards:
            per_device[shard.device.id] = per_device.get(shard.device.id, 0) + shard.data.nbytes
    assert tiny_plan["per_device"]["parameter_bytes"] == max(per_device.values())
    total = sum(leaf.nbytes for leaf in jax.tree.leaves(state.params))
    assert total / 8 < max(per_device.values()) < total  # sharded, partly replicated
    assert tiny_plan["parameters"]["total"] == sum(leaf.size for leaf in jax.tree.leaves(state.params))


def test_report_fields_are_consistent(tiny_plan):
    d = tiny_plan["per_device"]
    assert d["peak_bytes"] == d["argument_bytes"] + d["output_bytes"] - d["aliased_bytes"] + d["temp_bytes"]
    assert d["argument_bytes"] >= d["parameter_bytes"] + d["optimizer_bytes"]
    assert tiny_plan["collectives"]["all-gather"]["count"] > 0  # FSDP gathers parameters
    assert tiny_plan["fits"] is False and any("remat_policy=full" in s for s in tiny_plan["suggestions"])
    tokens = 16 * small_config().data.decoder_len
    assert tiny_plan["step_seconds_at_peak"] == pytest.approx(d["compiled_flops"] / 1e12)
    assert d["compiled_flops"] > 0
    assert tiny_plan["model_flops_per_step"] % tokens == 0


def test_collective_bytes_from_hlo():
    hlo = "\n".join([
        "  %ar = f32[1024]{0} all-reduce(f32[1024]{0} %x), replica_groups={{0,1,2,3}}, to_apply=%add",
        "  %ag = bf16[8,256]{1,0} all-gather(bf16[2,256]{1,0} %y), replica_groups={{0,1,2,3},{4,5,6,7}}, "
        "dimensions={0}",
        "  %rs = f32[64]{0} reduce-scatter(f32[128]{0} %z), replica_groups=[4,2]<=[8], dimensions={0}",
        "  %ags = (f32[4]{0}, f32[16]{0}) all-gather-start(f32[4]{0} %w), replica_groups={{0,1,2,3}}",
        "  %agd = f32[16]{0} all-gather-done((f32[4]{0}, f32[16]{0}) %ags)",
        "  ROOT %combined = (f32[100]{0}, bf16[50]{0}) all-reduce(f32[100]{0} %a, bf16[50]{0} %b), "
        "replica_groups={{0,1}}, to_apply=%add",
        "  %one = f32[9]{0} all-reduce(f32[9]{0} %v), replica_groups={{0},{1}}, to_apply=%add",
    ])
    out = collective_bytes(hlo, 8)
    # a combined all-reduce counts all its arrays; a group of one moves nothing
    assert out["all-reduce"] == {"count": 2, "bytes": 2 * 0.75 * 4096 + 2 * 0.5 * (400 + 100)}
    # 8x256 bf16 gathered by 4, plus the async pair once: its -done's 16 floats, its -start's groups
    assert out["all-gather"] == {"count": 2, "bytes": 0.75 * 8 * 256 * 2 + 0.75 * 64}
    assert out["reduce-scatter"] == {"count": 1, "bytes": 0.5 * 256 * 2}


def test_report_text_and_bad_mesh(tiny_plan):
    text = format_plan(tiny_plan)
    assert "(8 devices), global batch 16" in text and "fits in" in text and ": NO" in text
    assert "suggestion: rematerialise" in text and "all-gather x" in text
    # The command checks its flags before jax starts (the full path is the function above).
    bad = subprocess.run([sys.executable, "-m", "sora_jax.plan", "--config=configs/base.py", "--mesh=2,2"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600, env=ENV)
    assert bad.returncode == 2 and "--mesh" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("flags, message", [
    (["--config=configs/nope.py", "--mesh=1,1,1"], "error: --config: "),
    (["--config=configs/base.py", "--mesh=3,1,1"], "16 is not divisible by the 3 batch shards of mesh {'data': 3"),
    (["--config=configs/base.py", "--mesh=1,1,1", "--config.train.microbatches=0"],
     "config key train.microbatches: must be positive, got 0"),
])
def test_bad_input_is_one_line_and_exit_code_2(flags, message):
    bad = subprocess.run([sys.executable, "-m", "sora_jax.plan", *flags], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env=ENV)
    assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
