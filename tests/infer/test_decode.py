"""Decoding: the KV-cache loop against naive recomputation, beam search against greedy and a
hand-built distribution, and the sampling filters against known distributions."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sora_jax.infer.decode import beam_search, length_penalty, sample, strip
from sora_jax.infer.sampling import choose, top_k_mask, top_p_mask
from sora_jax.models import SoraModel, presets
from tests.batches import make_batch
from tests.models.helpers import encode, init_params

PAD, BOS, EOS = 0, 1, 2


def naive_greedy(model, params, prompt, memory, valid, steps):
    """Recomputes the full teacher-forced forward for every new token."""
    tokens = prompt
    forward = jax.jit(lambda p, t: model.apply({"params": p}, t, memory, valid, method=SoraModel.decode))
    for _ in range(steps):
        nxt = jnp.argmax(forward(params, tokens)[:, -1], axis=-1).astype(jnp.int32)
        tokens = jnp.concatenate([tokens, nxt[:, None]], axis=1)
    return tokens


def _tiny_run(cfg):
    model, params = init_params(cfg)
    enc = encode(model, params, make_batch(cfg))
    return model, params, enc.memory, enc.memory_valid, cfg.decoder.max_len


@pytest.fixture(scope="module")
def tiny():
    return _tiny_run(presets.tiny())


@pytest.mark.parametrize("share_text_embeddings", [False, True])
def test_kv_cache_greedy_equals_naive_recomputation(share_text_embeddings):
    model, params, memory, valid, max_len = _tiny_run(
        dataclasses.replace(presets.tiny(), share_text_embeddings=share_text_embeddings))
    B = memory.shape[0]
    prompt = jnp.tile(jnp.asarray([[BOS, 5, 7]], jnp.int32), (B, 1))
    # eos_id -1: never stops, so every position is compared.
    out, lengths = jax.jit(lambda p: sample(model, p, prompt, jnp.full((B,), 3), memory, valid, max_len=max_len,
                                            eos_id=-1, pad_id=PAD))(params)
    np.testing.assert_array_equal(out, naive_greedy(model, params, prompt, memory, valid, max_len - 3))
    np.testing.assert_array_equal(lengths, max_len)


def test_prompts_of_different_lengths_are_followed_then_continued(tiny):
    model, params, memory, valid, max_len = tiny
    prompt = jnp.asarray([[BOS, 5, 7, 9], [BOS, 4, PAD, PAD]], jnp.int32)
    out, _ = sample(model, params, prompt, jnp.asarray([4, 2]), memory[:2], valid[:2], max_len=10, eos_id=-1,
                    pad_id=PAD)
    np.testing.assert_array_equal(out[0], naive_greedy(model, params, prompt[:1], memory[:1], valid[:1], 6)[0])
    np.testing.assert_array_equal(out[1], naive_greedy(model, params, prompt[1:2, :2], memory[1:2], valid[1:2], 8)[0])


def test_rows_stop_at_eos_and_pad_after_it(tiny):
    model, params, memory, valid, max_len = tiny
    B = memory.shape[0]
    prompt = jnp.full((B, 1), BOS, jnp.int32)
    free, _ = sample(model, params, prompt, jnp.ones((B,)), memory, valid, max_len=8, eos_id=-1, pad_id=PAD)
    eos = int(free[0, 3])  # make row 0's fourth token the EOS
    out, lengths = sample(model, params, prompt, jnp.ones((B,)), memory, valid, max_len=8, eos_id=eos, pad_id=PAD)
    assert int(lengths[0]) <= 4 and np.all(np.asarray(out[0, int(lengths[0]):]) == PAD)
    row = strip(out, lengths, 1, eos)[0]
    assert eos not in row and row == [int(t) for t in out[0, 1:int(lengths[0]) - 1]]


def test_beam_width_one_is_greedy(tiny):
    model, params, memory, valid, _ = tiny
    B = memory.shape[0]
    greedy, g_len = sample(model, params, jnp.full((B, 1), BOS, jnp.int32), jnp.ones((B,)), memory, valid,
                           max_len=10, eos_id=-1, pad_id=PAD)
    beam, b_len, _ = beam_search(model, params, jnp.full((B,), BOS), memory, valid, beam_width=1, max_len=10,
                                 eos_id=-1, pad_id=PAD)
    np.testing.assert_array_equal(beam, greedy)
    np.testing.assert_array_equal(b_len, g_len)


class Markov(nn.Module):
    """A toy decoder: the next-token distribution depends only on the current token (a table)."""

    table: tuple

    @nn.compact
    def decode_step(self, tokens_BxT, memory=None, memory_valid=None):
        index = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
        index.value = index.value + tokens_BxT.shape[1]
        return jnp.log(jnp.asarray(self.table, jnp.float32) + 1e-9)[tokens_BxT]


A, B_ = 3, 4


def table(rows):
    t = np.zeros((5, 5))
    for token, probs in rows.items():
        for nxt, p in probs.items():
            t[token, nxt] = p
    t[[PAD, EOS], PAD] = 1.0
    return tuple(map(tuple, t))


def test_beam_search_finds_the_likelier_sequence_that_greedy_misses():
    # Greedy takes "a" (0.6) and then ends (0.4): p = 0.24; "b" then EOS has p = 0.4 * 0.9 = 0.36.
    model = Markov(table({BOS: {A: 0.6, B_: 0.4}, A: {EOS: 0.4, A: 0.3, B_: 0.3}, B_: {EOS: 0.9, A: 0.05, B_: 0.05}}))
    bos = jnp.asarray([BOS])
    greedy, g_len = sample(model, {}, bos[:, None], jnp.ones(1), max_len=6, eos_id=EOS, pad_id=PAD)
    assert strip(greedy, g_len, 1, EOS) == [[A]]
    beam, b_len, score = beam_search(model, {}, bos, beam_width=2, max_len=6, eos_id=EOS, pad_id=PAD)
    assert strip(beam, b_len, 1, EOS) == [[B_]]
    assert float(score[0]) == pytest.approx(np.log(0.36), rel=1e-5)


def test_length_penalty_favours_longer_sequences_as_documented():
    # "EOS" now (p = 0.5, 1 token) against "a EOS" (p = 0.45, 2 tokens).
    model = Markov(table({BOS: {EOS: 0.5, A: 0.5}, A: {EOS: 0.9, A: 0.1}}))
    bos = jnp.asarray([BOS])
    short, s_len, _ = beam_search(model, {}, bos, beam_width=2, max_len=6, eos_id=EOS, pad_id=PAD, alpha=0.0)
    assert strip(short, s_len, 1, EOS) == [[]]
    long, l_len, score = beam_search(model, {}, bos, beam_width=2, max_len=6, eos_id=EOS, pad_id=PAD, alpha=2.0)
    assert strip(long, l_len, 1, EOS) == [[A]]
    assert float(score[0]) == pytest.approx(np.log(0.45) / length_penalty(2.0, 2.0), rel=1e-5)


def test_top_k_one_is_greedy_and_top_p_keeps_the_smallest_set_reaching_p():
    logits = jnp.log(jnp.asarray([[0.05, 0.5, 0.15, 0.3], [0.4, 0.1, 0.3, 0.2]]))
    for seed in range(5):
        np.testing.assert_array_equal(choose(logits, jax.random.key(seed), temperature=1.0, top_k=1), [1, 0])
    np.testing.assert_array_equal(np.isfinite(top_k_mask(logits, 2)), [[0, 1, 0, 1], [1, 0, 1, 0]])
    # Row 0 sorted: 0.5, 0.3, 0.15, 0.05. p = 0.8 is reached by {0.5, 0.3}; a hair more needs 0.15 too.
    np.testing.assert_array_equal(np.isfinite(top_p_mask(logits, 0.8))[0], [0, 1, 0, 1])
    np.testing.assert_array_equal(np.isfinite(top_p_mask(logits, 0.81))[0], [0, 1, 1, 1])
    np.testing.assert_array_equal(np.isfinite(top_p_mask(logits, 0.3))[0], [0, 1, 0, 0])  # the top token always


def test_sampling_is_reproducible_with_a_seed_and_follows_the_distribution():
    logits = jnp.log(jnp.tile(jnp.asarray([[0.1, 0.6, 0.3]]), (4000, 1)))
    a = choose(logits, jax.random.key(1), temperature=1.0)
    np.testing.assert_array_equal(a, choose(logits, jax.random.key(1), temperature=1.0))
    assert not np.array_equal(a, choose(logits, jax.random.key(2), temperature=1.0))
    np.testing.assert_allclose(np.bincount(np.asarray(a), minlength=3) / 4000, [0.1, 0.6, 0.3], atol=0.03)
    nucleus = choose(logits, jax.random.key(1), temperature=1.0, top_p=0.6)
    assert set(np.unique(np.asarray(nucleus))) == {1}
