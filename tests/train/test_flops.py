"""The trainer's model-FLOP count (model_tflops_per_s, mfu) is the benchmark's: PaLM's 6 N per
token plus 12 * layers * width * sequence for attention."""

import numpy as np

from sora_jax.models.config import TextDecoderConfig
from sora_jax.train.loop import _model_flops_per_token


def test_six_n_plus_attention_per_token():
    params = {"decoder": {"embedding": {"table": np.zeros((320, 384))},
                          "blocks": {"wi": np.zeros((6, 384, 1536)), "wo": np.zeros((6, 1536, 384))}},
              "classifier": {"bias": np.zeros(4)}}
    decoder = TextDecoderConfig(num_layers=6, d_model=384, num_heads=6)
    n = 2 * 6 * 384 * 1536 + 4  # the embedding table is not counted
    assert _model_flops_per_token(params, decoder, 256) == 6 * n + 12 * 6 * 384 * 256
    # The attention width is heads x head_dim, which need not be d_model.
    wide = TextDecoderConfig(num_layers=2, d_model=64, num_heads=4, head_dim=32)
    assert _model_flops_per_token({}, wide, 10) == 12 * 2 * 128 * 10
