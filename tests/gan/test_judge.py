"""The project's judge classifier on real digits: accurate enough to score generated images,
and its features separate real digits from noise in the Fréchet distance."""

import numpy as np

from sora_jax.data.datasets.digits import DigitsSource
from sora_jax.gan.judge import judge_features, judge_predict, train_judge
from sora_jax.gan.metrics import conditional_accuracy, frechet_distance


def _digits(split):
    source = DigitsSource(split, image_size=16)
    records = [source[i] for i in range(len(source))]
    images = np.stack([r["image"] for r in records]).astype(np.float32) / 127.5 - 1.0
    return images, np.array([r["label"] for r in records])


def test_the_judge_classifies_held_out_digits_and_its_features_tell_real_from_noise(optimized_compiles):
    train_x, train_y = _digits("train")
    val_x, val_y = _digits("validation")
    model, params = train_judge(train_x, train_y, 10, steps=300, width=16)
    accuracy = conditional_accuracy(judge_predict(model, params, val_x), val_y)
    assert accuracy >= 0.9, accuracy
    real_a, real_b = judge_features(model, params, train_x[:180]), judge_features(model, params, val_x)
    noise = np.random.default_rng(0).uniform(-1, 1, val_x.shape).astype(np.float32)
    assert real_a.shape == (180, 128)
    assert frechet_distance(real_a, real_b) < 0.2 * frechet_distance(real_b, judge_features(model, params, noise))
