"""The reference that benchmarks/train_step.py's target comes from: the same 6-layer, 6-head,
384-wide decoder-only LM (nanoGPT's model: pre-norm, fused q/k/v, exact GELU, tied embeddings;
vocabulary 320, sequence 256, batch 16) trained by PyTorch eager in float32 with AdamW and
global-norm clipping; or with --dtype=bfloat16, under CPU autocast to bfloat16 (float32
parameters and optimizer, as train_step.py's bfloat16 rows). Not part of the project (PyTorch
is not a dependency): run it in its own environment to compare step times on the same machine.

    python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch
    /tmp/torchenv/bin/python benchmarks/reference/torch_train_step.py [--dtype=bfloat16]

Prints the step time (median of 4 rounds of 3 steps), the model FLOP/s (same convention as
train_step.py: 6 N tokens + 12 L d T tokens) and its fraction of a 2048 x 2048 torch matmul's
FLOP/s measured in the same process (a bfloat16 one for --dtype=bfloat16), and writes
benchmarks/results/torch_train_step[_bfloat16].json.
"""

import argparse
import contextlib
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

LAYERS, HEADS, WIDTH, BATCH, SEQ, VOCAB = 6, 6, 384, 16, 256, 320


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.qkv, self.out = nn.Linear(WIDTH, 3 * WIDTH), nn.Linear(WIDTH, WIDTH)
        self.fc, self.proj = nn.Linear(WIDTH, 4 * WIDTH), nn.Linear(4 * WIDTH, WIDTH)

    def forward(self, x):
        q, k, v = self.qkv(self.ln1(x)).split(WIDTH, dim=2)
        q, k, v = (t.view(BATCH, SEQ, HEADS, WIDTH // HEADS).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(BATCH, SEQ, WIDTH)
        x = x + self.out(y)
        return x + self.proj(F.gelu(self.fc(self.ln2(x))))


class LM(nn.Module):
    def __init__(self):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(VOCAB, WIDTH), nn.Embedding(SEQ, WIDTH)
        self.blocks = nn.ModuleList([Block() for _ in range(LAYERS)])
        self.final_norm = nn.LayerNorm(WIDTH)

    def forward(self, ids, targets):
        x = self.tokens(ids) + self.positions(torch.arange(SEQ))
        for block in self.blocks:
            x = block(x)
        logits = self.final_norm(x) @ self.tokens.weight.T
        return F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    dtype = parser.parse_args().dtype
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bfloat16"
                else contextlib.nullcontext())
    torch.manual_seed(0)
    model = LM()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, betas=(0.9, 0.99))
    ids = torch.randint(5, VOCAB, (BATCH, SEQ + 1))
    n = sum(p.numel() for name, p in model.named_parameters() if "tokens" not in name and "positions" not in name)

    def step():
        with autocast:
            loss = model(ids[:, :-1], ids[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(2):
        step()
    rounds = []
    for _ in range(4):
        start = time.perf_counter()
        for _ in range(3):
            step()
        rounds.append((time.perf_counter() - start) / 3)
    a = torch.randn(2048, 2048, dtype=getattr(torch, dtype))
    for _ in range(2):
        a @ a
    start = time.perf_counter()
    for _ in range(10):
        a @ a
    matmul = 2 * 2048 ** 3 * 10 / (time.perf_counter() - start)
    step_s = statistics.median(rounds)
    flops = 6 * n * BATCH * SEQ + 12 * LAYERS * WIDTH * SEQ * BATCH * SEQ
    row = {"torch": torch.__version__, "dtype": dtype, "threads": torch.get_num_threads(), "non_embedding_params": n,
           "step_ms": 1e3 * step_s, "step_ms_rounds": [1e3 * r for r in rounds],
           "model_gflops_per_s": flops / step_s / 1e9, "torch_matmul_gflops_per_s": matmul / 1e9,
           "fraction_of_torch_matmul": flops / step_s / matmul}
    print(f"torch {row['torch']} {dtype} ({row['threads']} threads): step {row['step_ms']:.0f} ms, "
          f"{row['model_gflops_per_s']:.0f} model GFLOP/s, torch matmul {row['torch_matmul_gflops_per_s']:.0f} "
          f"GFLOP/s, fraction {row['fraction_of_torch_matmul']:.2f}")
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results",
                        "torch_train_step.json" if dtype == "float32" else f"torch_train_step_{dtype}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(row, f, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
