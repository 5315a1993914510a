"""Ahead-of-time plan of a training run on a target mesh: the train step is lowered and compiled
for the mesh's devices (fake CPU devices stand in for accelerators) from abstract shapes, so
nothing is allocated, and the compiled executable reports per-device memory, FLOPs and the
collectives it will run.

Layer scans are unrolled for the plan (same parameters and shardings) so that XLA's cost
analysis and the collective count see every layer, not one loop body. The gradient-accumulation
loop (train.microbatches = k > 1) stays rolled, since unrolling it makes large models compile for
many minutes: its body is then counted once, so the compiled FLOPs and the collectives inside it
are per microbatch (about k times that per step); the memory figures are exact either way. Temporaries are those of
the XLA:CPU compile: the order of magnitude of an accelerator's, not its exact figure.
"""

from __future__ import annotations

import dataclasses
import math
import re

import jax
import numpy as np

from sora_jax.data.loader import components_config, example_spec
from sora_jax.data.schema import TASKS
from sora_jax.models.config import SoraConfig
from sora_jax.models.params import count_parameters, model_flops_per_token
from sora_jax.models.sora import SoraModel
from sora_jax.train import init_from, partitioning
from sora_jax.train import optimizer as optim_lib
from sora_jax.train.backends import JitBackend
from sora_jax.train.errors import ConfigurationError
from sora_jax.train.gan import GAN_TASKS, make_gan_parts
from sora_jax.train.mesh import make_mesh
from sora_jax.train.validate import check_values
from sora_jax.train.xla_cpu import STACKS

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "f32": 4,
                "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}
# "%x = f32[8,128]{1,0} all-reduce(...), replica_groups={{0,1},{2,3}}" (tuples when XLA combines
# several; async pairs "%s = ... all-gather-start(...)" then "%d = <result> all-gather-done(%s)").
_OP = re.compile(r"^\s*(?:ROOT\s+)?%?(?P<name>[\w.-]+)\s*=\s*(?P<shape>\(.*?\)|\w+\[[^\]]*\](?:\{[^}]*\})?)\s+"
                 r"(?P<op>" + "|".join(COLLECTIVES) + r")(?P<phase>-start|-done)?\((?P<args>[^)]*)\)")
_ARRAY = re.compile(r"(\w+)\[([^\]]*)\]")
_GROUPS = re.compile(r"replica_groups=\{(\{[^}]*\})")
_GROUPS_IOTA = re.compile(r"replica_groups=\[(\d+),(\d+)\]")


def _unrolled(model_cfg: SoraConfig) -> SoraConfig:
    parts = {name: dataclasses.replace(getattr(model_cfg, name), scan_unroll=getattr(model_cfg, name).num_layers)
             for name in STACKS if getattr(model_cfg, name).scan_layers}
    return dataclasses.replace(model_cfg, **parts)


def _shape_bytes(text: str) -> int:
    """Bytes of an HLO shape (a tuple's arrays summed)."""
    return sum(math.prod(int(d) for d in dims.split(",") if d.strip()) * _DTYPE_BYTES.get(dtype, 4)
               for dtype, dims in _ARRAY.findall(text))


def _group_size(line: str, num_devices: int) -> int:
    if m := _GROUPS.search(line):
        return max(1, len([x for x in m.group(1).strip("{}").split(",") if x.strip()]))
    if m := _GROUPS_IOTA.search(line):
        return int(m.group(2))
    return num_devices


def collective_bytes(hlo_text: str, num_devices: int) -> dict:
    """Per collective kind: count and bytes each device sends per step (ring algorithms: an
    all-reduce sends 2 (n-1)/n of its buffer, all-gather / all-to-all (n-1)/n of the result,
    reduce-scatter (n-1)/n of its input (n times the result), a permute its whole buffer). An
    async pair counts once, with the result shape of its -done and the groups of its -start."""
    out = {op: {"count": 0, "bytes": 0.0} for op in COLLECTIVES}
    starts = {}
    for line in hlo_text.splitlines():
        m = _OP.search(line)
        if not m:
            continue
        if m.group("phase") == "-start":
            starts[m.group("name")] = line
            continue
        op, size = m.group("op"), _shape_bytes(m.group("shape"))
        groups_line = line
        if m.group("phase") == "-done":
            operands = re.findall(r"%([\w.-]+)", line[m.end("phase"):]) or re.findall(r"([\w.-]+)\)", line)
            groups_line = starts.get(operands[-1] if operands else "", line)
        n = _group_size(groups_line, num_devices)
        if n <= 1 and op != "collective-permute":
            continue
        share = (n - 1) / n
        moved = {"all-reduce": 2 * share * size, "all-gather": share * size, "all-to-all": share * size,
                 "reduce-scatter": share * size * n, "collective-permute": size}[op]
        out[op]["count"] += 1
        out[op]["bytes"] += moved
    return out


def _per_device_bytes(tree, shardings) -> int:
    """Bytes of the largest shard set any one device holds."""
    totals = {}
    for leaf, sharding in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)):
        shard = sharding.shard_shape(leaf.shape)
        for device in sharding.device_set:
            totals[device.id] = totals.get(device.id, 0) + math.prod(shard) * np.dtype(leaf.dtype).itemsize
    return max(totals.values()) if totals else 0


def plan(config, mesh_shape, *, device_memory_gb: float = 0.0, peak_tflops: float = 0.0) -> dict:
    """The plan of `config` on a mesh of jax.devices() (enough fake CPU devices must exist)."""
    check_values(config)
    mesh = make_mesh(mesh_shape, jax.devices()[:math.prod(mesh_shape)])
    rules = partitioning.rules_from_config(config.mesh.rules)
    t = config.train
    B = config.data.batch_size
    if B % t.microbatches:
        raise ConfigurationError(f"config key train.microbatches: {t.microbatches} does not divide "
                                 f"data.batch_size {B}")
    partitioning.check_divisible(B // t.microbatches, mesh, rules, key="data.batch_size / train.microbatches")
    init_from.resolve(config)  # an imported part's size comes from its checkpoint's config.json
    model = SoraModel(_unrolled(SoraConfig.from_dict(config.model)))
    spec = example_spec(config.data)
    tasks = {entry["task"] for entry in components_config(config.data).values()}
    gan = make_gan_parts(config, model, tasks)
    step_kwargs = dict(microbatches=t.microbatches, z_loss=t.z_loss, nonfinite=t.nonfinite,
                       task_weights=[t.task_weights[name] for name in TASKS], gan=gan,
                       text_loss=bool(tasks - set(GAN_TASKS)))
    tx = optim_lib.make_optimizer(config.optim, t.num_steps)
    schedule = optim_lib.learning_rate_schedule(config.optim, t.num_steps)
    backend = JitBackend(model, tx, schedule, spec, mesh, rules, step_kwargs)
    state = backend.abstract_state()
    sharding = partitioning.batch_sharding(mesh, rules)
    batch = {k: jax.ShapeDtypeStruct((B,) + shape, dtype, sharding=sharding) for k, (shape, dtype) in
             spec.fields().items()}
    with partitioning.sharding_context(mesh, rules):
        compiled = backend._step.lower(state, batch, jax.random.key(0)).compile()
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    args, outputs = int(memory.argument_size_in_bytes), int(memory.output_size_in_bytes)
    alias, temp = int(memory.alias_size_in_bytes), int(memory.temp_size_in_bytes)
    peak = args + outputs - alias + temp  # the donated state's outputs reuse its buffers
    n = math.prod(mesh_shape)
    tokens = B * max(spec.decoder_len, 1)
    flops_per_token = model_flops_per_token(state.params, model.cfg.decoder, spec.decoder_len)
    result = {
        "mesh": dict(zip(mesh.axis_names, (int(s) for s in mesh.devices.shape))), "devices": n,
        "global_batch": B, "parameters": count_parameters(state.params),
        "per_device": {
            "parameter_bytes": _per_device_bytes(state.params, backend.state_shardings.params),
            "optimizer_bytes": _per_device_bytes(state.opt_state, backend.state_shardings.opt_state),
            "argument_bytes": args, "output_bytes": outputs, "aliased_bytes": alias, "temp_bytes": temp,
            "peak_bytes": peak, "compiled_flops": float(cost.get("flops", 0.0)),
        },
        "model_flops_per_step": flops_per_token * tokens,
        "collectives": collective_bytes(compiled.as_text(), n),
        "microbatches": int(t.microbatches),
    }
    result["collective_bytes_per_device"] = sum(c["bytes"] for c in result["collectives"].values())
    if peak_tflops:  # each device's compiled work (replicated parts included) at its peak rate
        result["step_seconds_at_peak"] = result["per_device"]["compiled_flops"] / (peak_tflops * 1e12)
    if device_memory_gb:
        result["device_memory_bytes"] = device_memory_gb * 2 ** 30
        result["fits"] = peak <= result["device_memory_bytes"]
        if not result["fits"]:
            result["suggestions"] = suggestions(config, mesh_shape, peak, result["device_memory_bytes"])
    return result


def suggestions(config, mesh_shape, peak, budget) -> list[str]:
    """What to change when the step does not fit, most effective first."""
    out = []
    policies = {config.model[name].remat_policy for name in STACKS}
    if policies & {"none", "dots"}:
        out.append("rematerialise the layer stacks: --config.model.{text_encoder,fusion,decoder}.remat_policy=full "
                   "(activations are recomputed in the backward pass)")
    data, fsdp, tensor = mesh_shape
    if data > 1:
        out.append(f"shard parameters and optimizer state over more devices: --config.mesh.shape=\"({data // 2},"
                   f"{fsdp * 2},{tensor})\"" if data % 2 == 0 else "move devices from data to fsdp in mesh.shape")
    out.append(f"split the batch: --config.train.microbatches={config.train.microbatches * 2} "
               f"(gradient accumulation; the step needs {peak / budget:.1f}x the device memory)")
    return out


def _gb(n):
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n / 1024:.1f} KiB"


def format_plan(p) -> str:
    d = p["per_device"]
    lines = [f"mesh {p['mesh']} ({p['devices']} devices), global batch {p['global_batch']}",
             "parameters: " + ", ".join(f"{k} {v:,}" for k, v in p["parameters"].items()),
             f"model FLOPs per step: {p['model_flops_per_step']:.3e} (6 N + attention, per token); compiled per device: "
             f"{d['compiled_flops']:.3e}",
             f"per device: parameters {_gb(d['parameter_bytes'])}, optimizer state {_gb(d['optimizer_bytes'])}",
             f"compiled per device: arguments {_gb(d['argument_bytes'])}, outputs {_gb(d['output_bytes'])} "
             f"({_gb(d['aliased_bytes'])} reuse donated inputs), temporaries {_gb(d['temp_bytes'])}, "
             f"peak {_gb(d['peak_bytes'])}",
             "collectives per device per step: " + (", ".join(
                 f"{op} x{c['count']} {_gb(c['bytes'])}" for op, c in p["collectives"].items()
                 if c["count"]) or "none")]
    if p["microbatches"] > 1:
        lines.append(f"note: train.microbatches={p['microbatches']}: compiled FLOPs and the collectives inside the "
                     f"accumulation loop are counted for one microbatch (about {p['microbatches']}x per step)")
    if "step_seconds_at_peak" in p:
        lines.append(f"step time at 100% of peak (compiled FLOPs per device): {p['step_seconds_at_peak'] * 1e3:.1f} ms")
    if "fits" in p:
        lines.append(f"fits in {_gb(p['device_memory_bytes'])}: {'yes' if p['fits'] else 'NO'}")
        lines += [f"  suggestion: {s}" for s in p.get("suggestions", [])]
    return "\n".join(lines)
