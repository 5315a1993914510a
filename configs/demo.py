"""The demo: the whole Sora text side trained on the bundled data, in a few minutes on 2 CPU cores.

    python -m sora_jax.main --config=configs/demo.py --workdir=runs/demo

One task mixture: shapes captioning, shapes VQA and shape classification (images 16x16),
Shakespeare language modelling and chatterbot conversations (seq2seq), with a small model
(width 64). Eval runs at the end on every task's validation split; expect caption and VQA
losses well under 1.0 and shape accuracy above 0.9.
"""

from configs import base


def get_config(arg=None):
    c = base.get_config()
    c.data.name = "mixture"
    c.data.mixture = base.mixture(
        shapes_caption=("shapes", "caption", 2), shapes_vqa=("shapes", "vqa", 2),
        shapes_classify=("shapes", "classify", 1), shakespeare=("shakespeare", "lm", 1), chat=("chat", "seq2seq", 1))
    c.data.image_size = 16
    c.data.text_len = 24
    c.data.decoder_len = 32
    c.data.batch_size = 32
    c.data.eval_batch_size = 64
    c.data.shapes.num_validation = 256
    c.data.num_workers = 1  # one loader process keeps the step waiting on data under 5% of the time

    m = c.model
    for part in (m.text_encoder, m.fusion, m.decoder):
        part.d_model, part.num_heads, part.mlp_dim = 64, 4, 256
    m.text_encoder.max_len, m.decoder.max_len = 32, 32
    m.image_encoder.image_size, m.image_encoder.d_model = 16, 64
    m.image_encoder.stage_features = (16, 32)
    m.num_classes = 3  # shapes: label = the largest object's shape

    c.train.num_steps = 1500
    c.train.log_every = 50
    c.train.eval_every = 0  # at the end
    c.train.eval_batches = 4
    c.train.checkpoint_every = 500
    c.optim.learning_rate = 2e-3
    c.optim.warmup_steps = 100
    return c
