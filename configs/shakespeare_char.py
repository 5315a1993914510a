"""Character-level (byte) language model on the bundled Shakespeare: the size of nanoGPT's CPU
recipe (4 layers, 4 heads, width 128, context 64, batch 12, 2,000 steps, no dropout).

    python -m sora_jax.main --config=configs/shakespeare_char.py --workdir=runs/shakespeare_char

nanoGPT's recipe reaches validation loss 1.93 (nats per byte) on the same text in 94 s on the
2-core development machine. This config, measured there (2026-12-01): 1.918 at step 700, 34.6 s
after launch; 1.706 after all 2,000 steps (86 s). (Before the flattened dense matmuls and the
hand-written norm derivatives: 1.915 at step 700 in 44.8 s warm, 46-51 s cold.) Rotary
positions halve the steps to 1.93 (learned positions: ~1,300); ReLU steps ~8% faster than GELU
for the same curve. Time to a loss: the `wall_time` of the first eval row below it in
metrics.jsonl, minus the launch time. With `--config.model.dtype=bfloat16` (bfloat16 products
accumulated in float32; on a CPU with AMX / AVX-512 BF16): 1.918 at step 700 in 19.5 s, 1.707
after 2,000 steps, 50 s in all (float32 in the same session: 31.1 s, 1.706, 84 s).
"""

from configs import base


def get_config(arg=None):
    c = base.get_config()
    c.data.name, c.data.task = "shakespeare", "lm"
    c.data.tokenizer = "byte"
    c.data.text_len = c.data.image_size = 0  # decoder only
    c.data.decoder_len = 64
    c.data.batch_size = 12
    c.data.eval_batch_size = 64

    d = c.model.decoder
    d.num_layers, d.num_heads, d.d_model, d.mlp_dim, d.max_len = 4, 4, 128, 512, 64
    d.vocab_size = 320  # byte vocabulary (261) padded
    d.cross_attention = False
    d.mlp_activation = "relu"
    d.position = "rope"  # rotary positions: 1.93 in half the steps of learned ones (~650 vs ~1,300)
    d.dropout_rate = 0.0
    d.scan_layers = False  # four small layers: unrolled compiles to slightly faster code on CPU
    c.model.num_classes = 0

    c.train.num_steps = 2000
    c.train.log_every = 100
    c.train.eval_every = 100
    c.train.eval_batches = 4  # 256 sequences of 64 (nanoGPT: 20 batches of 12 every 250 steps)
    c.train.checkpoint_every = 1000
    c.optim.learning_rate = 2e-3
    c.optim.warmup_steps = 100
    c.optim.end_lr_fraction = 0.1
    c.optim.b2 = 0.99
    c.optim.weight_decay = 0.1
    c.optim.clip_norm = 1.0
    return c
