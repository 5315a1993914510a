"""Throughput figures: the model-FLOP count (model_tflops_per_s, mfu) is the benchmark's (PaLM's
6 N per token plus 12 * layers * width * sequence for attention); the progress bar's figures."""

import numpy as np

from sora_jax.models.config import TextDecoderConfig
from sora_jax.models.params import model_flops_per_token


def test_six_n_plus_attention_per_token():
    params = {"decoder": {"embedding": {"table": np.zeros((320, 384))},
                          "blocks": {"wi": np.zeros((6, 384, 1536)), "wo": np.zeros((6, 1536, 384))}},
              "classifier": {"bias": np.zeros(4)}}
    decoder = TextDecoderConfig(num_layers=6, d_model=384, num_heads=6)
    n = 2 * 6 * 384 * 1536 + 4  # the embedding table is not counted
    assert model_flops_per_token(params, decoder, 256) == 6 * n + 12 * 6 * 384 * 256
    # The attention width is heads x head_dim, which need not be d_model.
    wide = TextDecoderConfig(num_layers=2, d_model=64, num_heads=4, head_dim=32)
    assert model_flops_per_token({}, wide, 10) == 12 * 2 * 128 * 10


def test_the_progress_bar_shows_gan_losses_and_images_per_second_without_text_targets():
    from sora_jax.train.loop import _postfix
    values = {"loss": 0.0, "tokens_per_s": 0.0, "examples_per_s": 12.5, "gan/g_loss": 0.7, "gan/d_loss": 1.25}
    assert _postfix(values, text=False) == {"g_loss": "0.700", "d_loss": "1.250", "img_s": "12.5"}
    assert _postfix({**values, "loss": 2.0, "tokens_per_s": 900.0}, text=True) == {"loss": "2.0000", "tok_s": "900"}
