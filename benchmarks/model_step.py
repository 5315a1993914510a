"""Forward and forward+backward speed of the Sora model presets, as a fraction of this
machine's plain matmul throughput measured in the same process.

    python benchmarks/model_step.py                       # tiny and base, CPU-sized batches
    python benchmarks/model_step.py --presets=tiny --batch=8

Prints a table and writes JSON (default benchmarks/results/model_step.json). FLOPs come from
XLA's cost analysis of the unrolled model (XLA counts a scanned loop body only once); the
timed model is the default, scanned one. Compile seconds are reported for both layouts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from common import matmul_flops_per_s

from sora_jax.models import SoraModel, count_parameters, presets
from sora_jax.nn import convert_layer_layout


def _time(fn, *args, repeats):
    jax.block_until_ready(fn(*args))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _inputs(cfg, batch, text_len, dec_len):
    rng = np.random.default_rng(0)
    size, ch = cfg.image_encoder.image_size, cfg.image_encoder.in_channels
    return (jnp.asarray(rng.integers(1, cfg.text_encoder.vocab_size, (batch, text_len)), jnp.int32),
            jnp.ones((batch, text_len), bool),
            jnp.asarray(rng.uniform(-1, 1, (batch, size, size, ch)), jnp.float32),
            jnp.asarray(rng.integers(1, cfg.decoder.vocab_size, (batch, dec_len)), jnp.int32))


def _step_functions(model, inputs):
    def loss(params):
        out = model.apply({"params": params}, *inputs)
        return jnp.mean(out["logits"]) + jnp.mean(out["class_logits"])
    return jax.jit(lambda p: model.apply({"params": p}, *inputs)["logits"]), jax.jit(jax.grad(loss))


def _compile(fn, params):
    start = time.perf_counter()
    compiled = fn.lower(params).compile()
    return compiled, time.perf_counter() - start


def _unrolled(cfg):
    parts = {name: dataclasses.replace(getattr(cfg, name), scan_layers=False)
             for name in ("text_encoder", "fusion", "decoder")}
    return dataclasses.replace(cfg, **parts)


def measure(preset, batch, text_len, dec_len, repeats, matmul_rate):
    cfg = presets.get(preset)
    inputs = _inputs(cfg, batch, text_len, dec_len)
    model = SoraModel(cfg)
    params = nn.meta.unbox(jax.jit(model.init)(jax.random.key(0), *inputs)["params"])
    forward, grad = _step_functions(model, inputs)
    forward_c, forward_compile_s = _compile(forward, params)
    grad_c, grad_compile_s = _compile(grad, params)
    u_forward, u_grad = _step_functions(SoraModel(_unrolled(cfg)), inputs)
    unrolled_params = jax.eval_shape(lambda: convert_layer_layout(params, scanned=False))
    u_forward_c, u_forward_compile_s = _compile(u_forward, unrolled_params)
    u_grad_c, u_grad_compile_s = _compile(u_grad, unrolled_params)
    forward_flops = u_forward_c.cost_analysis()["flops"]
    grad_flops = u_grad_c.cost_analysis()["flops"]
    forward_s = _time(forward_c, params, repeats=repeats)
    grad_s = _time(grad_c, params, repeats=repeats)
    return {
        "preset": preset, "batch": batch, "text_len": text_len, "decoder_len": dec_len,
        "image_size": cfg.image_encoder.image_size, "parameters": count_parameters(params),
        "forward_s": forward_s, "forward_backward_s": grad_s,
        "forward_gflop": forward_flops / 1e9, "forward_backward_gflop": grad_flops / 1e9,
        "forward_fraction_of_matmul": forward_flops / forward_s / matmul_rate,
        "forward_backward_fraction_of_matmul": grad_flops / grad_s / matmul_rate,
        "compile_s": {"forward_scanned": forward_compile_s, "forward_unrolled": u_forward_compile_s,
                      "forward_backward_scanned": grad_compile_s, "forward_backward_unrolled": u_grad_compile_s},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="tiny,base")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--text_len", type=int, default=64)
    parser.add_argument("--dec_len", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "model_step.json"))
    args = parser.parse_args()

    matmul_rate = matmul_flops_per_s()
    rows = []
    for preset in args.presets.split(","):
        text_len = min(args.text_len, presets.get(preset).text_encoder.max_len)
        dec_len = min(args.dec_len, presets.get(preset).decoder.max_len)
        rows.append(measure(preset, args.batch, text_len, dec_len, args.repeats, matmul_rate))

    header = (f"{'preset':<6} {'params':>12} {'batch':>5} {'fwd ms':>9} {'fwd+bwd ms':>11} {'fwd GFLOP':>10} "
              f"{'f+b GFLOP':>10} {'fwd/matmul':>10} {'f+b/matmul':>10} {'compile scan/unroll s':>22}")
    print(f"plain f32 matmul: {matmul_rate / 1e9:.1f} GFLOP/s on {jax.devices()[0].platform} "
          f"({os.cpu_count()} cpus)")
    print(header)
    for r in rows:
        c = r["compile_s"]
        print(f"{r['preset']:<6} {r['parameters']['total']:>12,} {r['batch']:>5} {r['forward_s'] * 1e3:>9.1f} "
              f"{r['forward_backward_s'] * 1e3:>11.1f} {r['forward_gflop']:>10.2f} {r['forward_backward_gflop']:>10.2f} "
              f"{r['forward_fraction_of_matmul']:>10.2f} {r['forward_backward_fraction_of_matmul']:>10.2f} "
              f"{c['forward_backward_scanned']:>10.1f} / {c['forward_backward_unrolled']:<9.1f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"matmul_gflops": matmul_rate / 1e9, "platform": jax.devices()[0].platform,
                   "device_kind": jax.devices()[0].device_kind, "machine": platform.machine(),
                   "jax": jax.__version__, "rows": rows}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
