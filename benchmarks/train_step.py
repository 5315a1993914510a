"""Train-step speed of decoder-only language models as a fraction of this machine's matmul
roofline, and the share of wall time the loop is blocked by checkpoint saves.

    python benchmarks/train_step.py                # d_model 256 and 512 at sequence 256, and the
                                                   # 6-layer / 6-head / 384-wide target model,
                                                   # computing in float32 and in bfloat16
    python benchmarks/train_step.py --models=target_6L_384 --dtypes=float32 --steps=5 --rounds=3

Model FLOPs per step use the PaLM / nanoGPT convention, 6 N tokens + 12 layers d_model T tokens
(N: parameters outside embeddings), so figures compare with theirs. The roofline is a plain
float32 jnp.dot of 2048 x 2048 measured in the same process, next to each row's timings: before
each round of steps and after the last, their median (`f32 roofline`; the one timed at the
start is printed above the table); bfloat16 rows (mixed precision:
bfloat16 products accumulated in float32, float32 parameters and optimizer state) are also
given against a bfloat16 jnp.dot's roofline (`of own dtype's`). The step time is the median of
`rounds` timings of `steps` steps each (a shared machine's noise is mostly one-sided).
`matmuls alone`: every matrix product the compiled step performs (forward and backward, found in
its jaxpr by benchmarks/step_matmuls.py), each timed on its own in this process and summed: dense
(projections, MLP, logits) + batched (attention's per-head products); `dense/batched of roofline`:
their FLOP rates so timed over the f32 roofline. The step can hardly be faster than its dense
products alone; the batched ones run on one core each, and inside the step XLA overlaps
them with other work, so their sum is not a lower bound.
Checkpoint blocking: the time the loop waits in an (asynchronous) Orbax save, over 100 steps
plus that wait. `--host_memory=reuse` (the default) keeps freed host memory for the next step, as
the trainer does (config.train.reuse_host_memory, see sora_jax/train/host_memory.py); `release`,
glibc's default, maps and page-faults XLA:CPU's per-step buffer afresh every step (page faults per
step are in the JSON).
Prints a table and writes JSON (benchmarks/results/train_step.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import tempfile
import time

import grain
import jax
import ml_collections
import numpy as np
from common import matmul_flops_per_s, matmul_timer, report, results_path
from step_matmuls import matmul_time

from sora_jax.data.schema import TASKS, ExampleSpec
from sora_jax.models import SoraModel, TextDecoderConfig, presets
from sora_jax.train import optimizer
from sora_jax.train.backends import JitBackend
from sora_jax.train import host_memory
from sora_jax.train.checkpoint import Checkpointer
from sora_jax.train.mesh import make_mesh
from sora_jax.train.partitioning import DEFAULT_RULES, sharding_context

MODELS = {  # name: (layers, heads, d_model, batch, sequence)
    "d256": (4, 4, 256, 16, 256),
    "d512": (4, 8, 512, 16, 256),
    "target_6L_384": (6, 6, 384, 16, 256),
}
VOCAB = 320
COLUMNS = [("model", 14, lambda r: r["model"]), ("dtype", 9, lambda r: r["dtype"]),
           ("params", 10, lambda r: f"{r['non_embedding_params']:,}"),
           ("step ms", 9, lambda r: f"{r['step_ms']:.0f}"), ("tokens/s", 9, lambda r: f"{r['tokens_per_s']:.0f}"),
           ("GFLOP/s", 8, lambda r: f"{r['model_gflops_per_s']:.0f}"),
           ("f32 roofline", 12, lambda r: f"{r['matmul_gflops_per_s_adjacent']['float32']:.0f}"),
           ("of f32 roofline", 15, lambda r: f"{r['fraction_of_matmul_roofline']:.2f}"),
           ("of own dtype's", 14, lambda r: f"{r['fraction_of_same_dtype_roofline']:.2f}"),
           ("matmuls alone", 13, lambda r: f"{r['dense_matmuls_alone_ms']:.0f}+{r['batched_matmuls_alone_ms']:.0f} ms"),
           ("dense/batched of roofline", 25, lambda r: f"{r['dense_matmuls_fraction_of_matmul_roofline']:.2f} / "
                                                      f"{r['batched_matmuls_fraction_of_matmul_roofline']:.2f}"),
           ("ckpt blocked", 13, lambda r: f"{100 * r['checkpoint_blocked_fraction_at_100_steps']:.2f}%")]


def lm_batch(batch, seq):
    rng = np.random.default_rng(0)
    spec = ExampleSpec(decoder_len=seq)
    b = {k: np.zeros((batch,) + shape, dt) for k, (shape, dt) in spec.fields().items()}
    ids = rng.integers(5, VOCAB, (batch, seq + 1)).astype(np.int32)
    b.update(decoder_inputs=ids[:, :-1], decoder_targets=ids[:, 1:], decoder_mask=np.ones((batch, seq), np.float32),
             decoder_segment_ids=np.ones((batch, seq), np.int32),
             decoder_positions=np.broadcast_to(np.arange(seq), (batch, seq)).astype(np.int32),
             task_id=np.full(batch, TASKS.index("lm"), np.int32), weight=np.ones(batch, np.float32))
    return spec, b


def lm_backend(name, dtype="float32", mesh_shape=(1, 1, 1)):
    """(the trainer's jit backend for MODELS[name] trained by AdamW on a mesh, one LM batch)."""
    layers, heads, width, batch, seq = MODELS[name]
    decoder = TextDecoderConfig(num_layers=layers, num_heads=heads, d_model=width, mlp_dim=4 * width, max_len=seq,
                                vocab_size=VOCAB, cross_attention=False, scan_layers=False)
    model = SoraModel(dataclasses.replace(presets.tiny(), decoder=decoder, num_classes=0, dtype=dtype).validate())
    o = ml_collections.ConfigDict(dict(name="adamw", learning_rate=1e-3, warmup_steps=0, schedule="constant",
                                       end_lr_fraction=1.0, weight_decay=0.1, b1=0.9, b2=0.99, eps=1e-8, clip_norm=1.0))
    spec, host_batch = lm_batch(batch, seq)
    mesh = make_mesh(mesh_shape, jax.devices()[:int(np.prod(mesh_shape))])
    return JitBackend(model, optimizer.make_optimizer(o, 1000), optimizer.learning_rate_schedule(o, 1000), spec,
                      mesh, DEFAULT_RULES, {}), host_batch


def _rate(matmuls, kind):
    """FLOP/s of the step's `kind` products timed alone (NaN if it has none)."""
    return matmuls[f"{kind}_flops"] / matmuls[f"{kind}_s"] if matmuls[f"{kind}_s"] else float("nan")


def measure(name, dtype, steps, rounds):
    layers, heads, width, batch, seq = MODELS[name]
    backend, host_batch = lm_backend(name, dtype)
    state = backend.init(jax.random.key(0))
    batch_arrays = backend.put_batch(host_batch)
    key = jax.random.key(1)
    for _ in range(3):  # compile and warm up (the reused heap settles in a step or two)
        state, metrics = backend.step(state, batch_arrays, key)
    jax.block_until_ready(state)
    # The roofline is re-timed before each round and after the last: this shared machine's speed
    # drifts by 10-20% over minutes, and one timing at the start compared rows with other phases.
    timers = {d: matmul_timer(dtype=d) for d in dict.fromkeys(("float32", dtype))}
    adjacent = {d: [] for d in timers}
    timings, faults = [], 0
    for _ in range(rounds):
        for d, timer in timers.items():
            adjacent[d].append(timer())
        faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        for _ in range(steps):
            state, metrics = backend.step(state, batch_arrays, key)
        jax.block_until_ready(state)
        timings.append((time.perf_counter() - start) / steps)
        faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before
    for d, timer in timers.items():
        adjacent[d].append(timer())
    rooflines = {d: float(np.median(v)) for d, v in adjacent.items()}
    faults_per_step = faults / (rounds * steps)
    step_s = float(np.median(timings))
    params = state.params
    n = sum(x.size for path, x in jax.tree_util.tree_leaves_with_path(params)
            if "embedding" not in jax.tree_util.keystr(path))
    tokens = batch * seq
    flops = 6 * n * tokens + 12 * layers * width * seq * tokens
    with sharding_context(backend.mesh, backend.rules):  # as backend.step traces the jitted step
        matmuls = matmul_time(backend._step, state, batch_arrays, key)
    with tempfile.TemporaryDirectory() as d:
        ckpt = Checkpointer(d, async_save=True)
        iterator = iter(grain.MapDataset.range(10).to_iter_dataset())
        save_start = time.perf_counter()
        ckpt.save(1, state, iterator, {})
        blocked = time.perf_counter() - save_start
        ckpt.close()
    return {"model": name, "dtype": dtype, "layers": layers, "heads": heads, "d_model": width, "batch": batch, "sequence": seq,
            "non_embedding_params": int(n), "step_ms": 1e3 * step_s, "step_ms_rounds": [1e3 * t for t in timings],
            "tokens_per_s": tokens / step_s, "page_faults_per_step": faults_per_step,
            "model_gflops_per_s": flops / step_s / 1e9, "fraction_of_matmul_roofline": flops / step_s / rooflines["float32"],
            "fraction_of_same_dtype_roofline": flops / step_s / rooflines[dtype],
            "matmul_gflops_per_s_adjacent": {d: r / 1e9 for d, r in rooflines.items()},
            "matmuls_alone_ms": 1e3 * (matmuls["dense_s"] + matmuls["batched_s"]),
            "dense_matmuls_alone_ms": 1e3 * matmuls["dense_s"], "batched_matmuls_alone_ms": 1e3 * matmuls["batched_s"],
            "matmul_products": matmuls["products"],
            "dense_matmuls_fraction_of_matmul_roofline": _rate(matmuls, "dense") / rooflines["float32"],
            "batched_matmuls_fraction_of_matmul_roofline": _rate(matmuls, "batched") / rooflines["float32"],
            "checkpoint_blocked_s": blocked, "checkpoint_blocked_fraction_at_100_steps": blocked / (100 * step_s + blocked)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--dtypes", default="float32,bfloat16", help="compute dtypes (parameters stay float32)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=results_path("train_step"))
    parser.add_argument("--host_memory", choices=("reuse", "release"), default="reuse",
                        help="reuse: keep freed host memory (config.train.reuse_host_memory); release: glibc's default")
    args = parser.parse_args()
    if args.host_memory == "reuse":  # before jax starts its threads
        host_memory.reuse_freed_memory()
    dtypes = args.dtypes.split(",")
    rooflines = {d: matmul_flops_per_s(dtype=d) for d in dict.fromkeys(["float32"] + dtypes)}
    rows = [measure(name, dtype, args.steps, args.rounds)
            for dtype in dtypes for name in args.models.split(",")]
    for d, flops in rooflines.items():
        print(f"{d} matmul (float32 accumulation), at the start: {flops / 1e9:.0f} GFLOP/s")
    report(rooflines["float32"], rows, COLUMNS, args.out, extra={"matmul_gflops_per_s_by_dtype": {
        d: flops / 1e9 for d, flops in rooflines.items()}, "host_memory": args.host_memory})


if __name__ == "__main__":
    main()
