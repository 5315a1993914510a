"""The project's own image classifier ("judge"), trained on real images of a dataset: its
penultimate layer is the feature extractor for the Fréchet distance (no pretrained Inception
weights can be downloaded here), and its predictions give the conditional accuracy of
generated images."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from sora_jax.nn.conv import conv
from sora_jax.nn.linear import dense


class Judge(nn.Module):
    num_classes: int
    width: int = 32
    feature_dim: int = 128

    @nn.compact
    def __call__(self, images_BxHxWxC, *, features=False):
        x = images_BxHxWxC
        for i, c in enumerate((self.width, 2 * self.width, 4 * self.width)):
            x = jax.nn.relu(conv(c, 3, name=f"conv{i}")(x))
            x = jax.nn.relu(conv(c, 3, 2, name=f"down{i}")(x))
        h = jax.nn.relu(dense(self.feature_dim, ("conv_out", "mlp"), name="features")(jnp.mean(x, axis=(1, 2))))
        return h if features else dense(self.num_classes, ("mlp", None), name="logits")(h)


def train_judge(images, labels, num_classes, *, steps=400, batch_size=64, learning_rate=3e-3, seed=0, width=32):
    """Fits a Judge to (images [N, H, W, C] in [-1, 1], labels [N]); returns (module, params)."""
    model = Judge(num_classes, width)
    images, labels = np.asarray(images, np.float32), np.asarray(labels, np.int32)
    params = nn.unbox(model.init(jax.random.key(seed), images[:1])["params"])
    tx = optax.adam(learning_rate)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, x, y):
        def loss(p):
            return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, x), y).mean()
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, value

    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = rng.integers(0, len(images), batch_size)
        params, opt, _ = step(params, opt, images[idx], labels[idx])
    return model, params


def _batched(fn, images, batch_size=256):
    images = np.asarray(images, np.float32)
    return np.concatenate([np.asarray(fn(images[i:i + batch_size])) for i in range(0, len(images), batch_size)])


def judge_features(model, params, images) -> np.ndarray:
    f = jax.jit(lambda x: model.apply({"params": params}, x, features=True))
    return _batched(f, images)


def judge_predict(model, params, images) -> np.ndarray:
    f = jax.jit(lambda x: jnp.argmax(model.apply({"params": params}, x), -1))
    return _batched(f, images)
