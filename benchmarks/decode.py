"""Autoregressive decoding speed: the KV-cache loop (sora_jax.infer.decode.sample) against naive
decoding that recomputes the whole forward for every new token, and the cached step's achieved
memory bandwidth as a fraction of a large donated array copy's, both measured in this process.

    python benchmarks/decode.py                      # 64, 256 and 1024 generated tokens
    python benchmarks/decode.py --lengths=64,256 --d_model=256

Targets (issue 6): cache / naive tokens/s >= 10 at 256 tokens; bandwidth fraction >= 0.5 for a
model larger than the CPU cache (the default decoder-only model has ~30M float32 parameters,
~120 MB).

Naive decoding jit-compiles one step over a fixed buffer of the final length (as a jitted
decoder without a cache must, to avoid a compile per length), so each of its steps costs the
same: it is timed over a few steps and reported per token. The cached loop is timed end to
end, every token generated (no EOS). Bytes per cached step = parameters + the key/value cache
(every layer's preallocated keys and values are read by the masked attention); the copy
reference reads and writes a donated array of --copy_mb megabytes (best of 5 trials). The model
is decoded with unrolled layers, converted once before timing, as the generate command does.
"""

from __future__ import annotations

import argparse
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
from common import matmul_flops_per_s, report, results_path

from sora_jax.infer.decode import sample, unrolled_layers
from sora_jax.models import SoraModel
from sora_jax.models.config import SoraConfig, TextDecoderConfig

BOS, PAD = 1, 0


def _median_time(fn, *args, repeats):
    jax.block_until_ready(fn(*args))  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _model(args, max_len):
    decoder = TextDecoderConfig(vocab_size=args.vocab, max_len=max_len, num_layers=args.layers, d_model=args.d_model,
                                num_heads=args.heads, mlp_dim=4 * args.d_model, cross_attention=False,
                                dropout_rate=0.0)
    model = SoraModel(SoraConfig(decoder=decoder, num_classes=0).validate())
    tokens = jnp.full((1, max_len), BOS, jnp.int32)
    params = nn.meta.unbox(jax.jit(lambda k: model.init(k, tokens, method=SoraModel.decode))(jax.random.key(0))
                           ["params"])
    return unrolled_layers(model, params)  # once, as the generate command does


def copy_bytes_per_s(megabytes, repeats=10, trials=5):
    """Bytes read + written per second by a jitted, donated elementwise pass over a large array:
    the best of several trials, since on a shared machine single trials vary by more than 1.5x."""
    x = jnp.zeros((megabytes * 2 ** 20 // 4,), jnp.float32)
    step = jax.jit(lambda a: a + 1.0, donate_argnums=0)
    x = step(x).block_until_ready()
    best = 0.0
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            x = step(x)
        x.block_until_ready()
        best = max(best, 2 * x.nbytes * repeats / (time.perf_counter() - start))
    return best


def cache_bytes(model, params, batch, max_len):
    _, variables = jax.eval_shape(lambda p: model.apply({"params": p}, jnp.zeros((batch, 1), jnp.int32),
                                                        method=SoraModel.decode_step, mutable=["cache"]), params)
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(variables["cache"]) if x.ndim >= 3)


def measure(args, generated, copy_rate):
    max_len = generated + 1  # BOS, then every generated token
    model, params = _model(args, max_len)
    B = args.batch
    prompt = jnp.full((B, 1), BOS, jnp.int32)

    cached = jax.jit(lambda p: sample(model, p, prompt, jnp.ones((B,), jnp.int32), max_len=max_len, eos_id=-1,
                                      pad_id=PAD)[0])
    cached_s = _median_time(cached, params, repeats=args.repeats)

    naive_steps = min(generated, args.naive_steps)

    def naive(p):
        def body(t, buf):
            logits = model.apply({"params": p}, buf, method=SoraModel.decode)
            nxt = jnp.argmax(jax.lax.dynamic_index_in_dim(logits, t, 1, keepdims=False), -1).astype(jnp.int32)
            return jax.lax.dynamic_update_index_in_dim(buf, nxt, t + 1, 1)
        buf = jnp.full((B, max_len), PAD, jnp.int32).at[:, 0].set(BOS)
        return jax.lax.fori_loop(0, naive_steps, body, buf)
    naive_s = _median_time(jax.jit(naive), params, repeats=max(1, args.repeats // 2)) / naive_steps

    param_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params))
    step_bytes = param_bytes + cache_bytes(model, params, B, max_len)
    cached_step_s = cached_s / generated
    return {
        "generated_tokens": generated, "batch": B, "parameters": sum(x.size for x in jax.tree.leaves(params)),
        "cached_tokens_per_s": B / cached_step_s, "naive_tokens_per_s": B / naive_s,
        "speedup": naive_s / cached_step_s, "naive_steps_timed": naive_steps,
        "bytes_per_step": step_bytes, "decode_bytes_per_s": step_bytes / cached_step_s,
        "bandwidth_fraction_of_copy": step_bytes / cached_step_s / copy_rate,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="64,256,1024")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--d_model", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--naive_steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copy_mb", type=int, default=512)
    parser.add_argument("--out", default=results_path("decode"))
    args = parser.parse_args()

    copy_rate = copy_bytes_per_s(args.copy_mb)
    print(f"donated copy of {args.copy_mb} MB: {copy_rate / 1e9:.1f} GB/s (read + write)")
    rows = [measure(args, int(n), copy_rate) for n in args.lengths.split(",")]
    for row in rows:
        row["copy_bytes_per_s"] = copy_rate
    columns = [("tokens", 6, lambda r: r["generated_tokens"]),
               ("params", 11, lambda r: f"{r['parameters']:,}"),
               ("cache tok/s", 11, lambda r: f"{r['cached_tokens_per_s']:.1f}"),
               ("naive tok/s", 11, lambda r: f"{r['naive_tokens_per_s']:.2f}"),
               ("speedup", 8, lambda r: f"{r['speedup']:.1f}x"),
               ("MB/step", 8, lambda r: f"{r['bytes_per_step'] / 1e6:.0f}"),
               ("GB/s", 6, lambda r: f"{r['decode_bytes_per_s'] / 1e9:.1f}"),
               ("bw/copy", 8, lambda r: f"{r['bandwidth_fraction_of_copy']:.2f}")]
    report(matmul_flops_per_s(), rows, columns, args.out)


if __name__ == "__main__":
    main()
