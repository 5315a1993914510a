"""The base Sora model on one GPU host: 265M parameters (the `base` preset with an 8,192-piece
SentencePiece vocabulary: BERT-base-sized text
encoder and decoder, 12 layers, width 768, 12 heads; ResNet-50 image encoder at 224 pixels;
4 joint fusion layers), bfloat16 compute, on the bundled multimodal mixture.

    python -m sora_jax.main --config=configs/sora_base.py --workdir=runs/sora_base

Sized for one host with 8 GPUs of >= 40 GB (data parallel x FSDP over the local devices);
on one GPU set --config.mesh.shape="(1,1,1)" --config.data.batch_size=32 --config.train.microbatches=2.
It is far too large for the CPU demo machine.
"""

from configs import base
from sora_jax.models import presets


def get_config(arg=None):
    c = base.get_config()
    c.model = presets.config_dict("base")
    c.model.dtype = "bfloat16"
    c.model.num_classes = 3
    for part in (c.model.text_encoder, c.model.fusion, c.model.decoder):
        part.remat_policy = "dots"  # keep matmul outputs, recompute the rest in the backward pass
    c.model.text_encoder.vocab_size = c.model.decoder.vocab_size = 8192
    c.data.name = "mixture"
    c.data.mixture = base.mixture(
        caption=("shapes", "caption", 1), vqa=("shapes", "vqa", 1), classify=("shapes", "classify", 0.5),
        plays=("shakespeare", "lm", 1), chat=("chat", "seq2seq", 0.5))
    c.data.tokenizer = "sentencepiece:train"
    c.data.vocab_size = 8192
    c.data.image_size = 224
    c.data.text_len = 64
    c.data.decoder_len = 128
    c.data.batch_size = 256
    c.data.num_workers = 8
    c.mesh.shape = (-1, 1, 1)
    c.train.num_steps = 100_000
    c.train.log_every = 100
    c.train.eval_every = 5000
    c.train.eval_batches = 20
    c.train.checkpoint_every = 2000
    c.train.peak_tflops = 989.0  # H100 / H200 dense bf16, for the MFU column
    c.optim.learning_rate = 3e-4
    c.optim.warmup_steps = 2000
    c.optim.weight_decay = 0.1
    return c
