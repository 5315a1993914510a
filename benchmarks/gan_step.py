"""GAN step speed: images/s and the step's FLOP/s (XLA's cost analysis of the compiled step,
almost all convolutions) over the FLOP/s of a plain float32 jnp.dot measured in the same process.

    python benchmarks/gan_step.py [--steps=5] [--sizes=16,32,64] [--batch=32]

Prints a table and writes JSON (benchmarks/results/gan_step.json).
"""

from __future__ import annotations

import argparse
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import matmul_flops_per_s, report, results_path

from sora_jax.gan import Discriminator, GANConfig, Generator
from sora_jax.gan.step import GANState, GANTraining, make_gan_step

COND = 64
COLUMNS = [("size", 5, lambda r: r["image_size"]), ("mode", 8, lambda r: "inpaint" if r["inpaint"] else "t2i"),
           ("G params", 10, lambda r: f"{r['g_params']:,}"), ("D params", 10, lambda r: f"{r['d_params']:,}"),
           ("step ms", 8, lambda r: f"{r['step_ms']:.0f}"), ("images/s", 9, lambda r: f"{r['images_per_s']:.1f}"),
           ("GFLOP/step", 10, lambda r: f"{r['step_gflop']:.2f}"),
           ("of roofline", 11, lambda r: f"{r['fraction_of_matmul_roofline']:.2f}")]


def measure(size, batch, steps, roofline, inpaint=False):
    cfg = GANConfig(image_size=size, base_channels=32, max_channels=256, inpaint=inpaint, spectral_norm=True)
    g, d = Generator(cfg), Discriminator(cfg)
    g_tx, d_tx = optax.adam(2e-4, b1=0.0, b2=0.99), optax.adam(2e-4, b1=0.0, b2=0.99)
    rng = np.random.default_rng(0)
    data = {"image": jnp.asarray(rng.uniform(-1, 1, (batch, size, size, 3)), jnp.float32),
            "cond": jnp.asarray(rng.normal(size=(batch, COND)), jnp.float32),
            "known": jnp.asarray(rng.random((batch, size, size, 1)) > 0.5, jnp.float32)}
    g_vars = g.init(jax.random.key(0), jnp.zeros((1, cfg.z_dim)), data["cond"][:1], data["image"][:1],
                    data["known"][:1])
    d_vars = d.init(jax.random.key(1), data["image"][:2], data["cond"][:2], data["known"][:2] if inpaint else None)
    state = nn.unbox(GANState.create(g_vars["params"], d_vars, g_tx, d_tx))
    # R1 every step here so every step does the same work (lazy R1 would make steps uneven).
    step = jax.jit(make_gan_step(g, d, g_tx, d_tx, GANTraining(r1_every=1)), donate_argnums=0)
    compiled = step.lower(state, data, jax.random.key(0)).compile()
    flops = float(compiled.cost_analysis().get("flops", 0.0))
    for i in range(2):
        state, metrics = step(state, data, jax.random.key(i))
    jax.block_until_ready(state)
    start = time.perf_counter()
    for i in range(steps):
        state, metrics = step(state, data, jax.random.key(i))
    jax.block_until_ready(state)
    step_s = (time.perf_counter() - start) / steps
    return {"image_size": size, "batch": batch, "inpaint": inpaint,
            "g_params": int(sum(x.size for x in jax.tree.leaves(state.g_params))),
            "d_params": int(sum(x.size for x in jax.tree.leaves(state.d_params))),
            "step_ms": 1e3 * step_s, "images_per_s": batch / step_s, "step_gflop": flops / 1e9,
            "gflops_per_s": flops / step_s / 1e9, "fraction_of_matmul_roofline": flops / step_s / roofline}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="16,32,64")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default=results_path("gan_step"))
    args = parser.parse_args()
    roofline = matmul_flops_per_s()
    rows = [measure(int(s), args.batch, args.steps, roofline) for s in args.sizes.split(",")]
    rows.append(measure(int(args.sizes.split(",")[0]), args.batch, args.steps, roofline, inpaint=True))
    report(roofline, rows, COLUMNS, args.out)


if __name__ == "__main__":
    main()
