"""The periodic eval's generated outputs on the trainer's backends: decoding sharded over every
mesh layout (and under pmap) gives the single-device tokens, greedy and beam search."""

import types

import jax
import numpy as np
import pytest

from sora_jax.infer.text import Decoding
from sora_jax.models import SoraModel
from sora_jax.train import optimizer, xla_cpu
from sora_jax.train.backends import make_backend
from sora_jax.train.generated_eval import GeneratedEval
from sora_jax.train.mesh import make_mesh
from sora_jax.train.partitioning import DEFAULT_RULES
from tests.train.helpers import SPEC, batches, optim, tiny_model

# Token ids as text, so the decoded strings show every generated id.
TOK = types.SimpleNamespace(bos_id=1, eos_id=2, pad_id=0, decode=lambda ids: " ".join(map(str, ids)))


def generated_texts(mesh_shape=(1, 1, 1), backend="jit", beam=0):
    n = int(np.prod(mesh_shape))
    mesh = make_mesh(mesh_shape, jax.devices()[:n])
    model = SoraModel(xla_cpu.avoid_collective_deadlocks(tiny_model(), mesh))
    o = optim()
    be = make_backend(backend, model, optimizer.make_optimizer(o, 10), optimizer.learning_rate_schedule(o, 10),
                      SPEC, mesh, DEFAULT_RULES, dict(microbatches=1))
    state = be.init(jax.random.key(0))
    text_eval = GeneratedEval(model, TOK, {"c": "caption", "q": "vqa"}, batches=1, max_len=SPEC.decoder_len + 1,
                              decoding=Decoding(beam=beam))
    batch = batches(1, batch_size=8)[0]
    batch["weight"][5] = 0  # a padding row: decoded, but not scored
    text_eval.add("c", be, state, batch, be.put_batch(batch))
    return text_eval._texts["c"], text_eval.results("c")


@pytest.fixture(scope="module")
def single_device():
    return {beam: generated_texts(beam=beam) for beam in (0, 2)}


@pytest.mark.parametrize("shape", [(2, 2, 2), (1, 2, 4)])
def test_sharded_greedy_decoding_matches_one_device(single_device, shape):
    (hypotheses, references), _ = generated_texts(shape)
    assert len(hypotheses) == 7 and hypotheses == single_device[0][0][0]
    assert references == single_device[0][0][1]
    assert all(len(h.split()) == SPEC.decoder_len for h in hypotheses)  # random weights: never EOS


def test_sharded_beam_search_matches_one_device(single_device):
    (hypotheses, _), _ = generated_texts((2, 2, 2), beam=2)
    assert hypotheses == single_device[2][0][0]


def test_pmap_backend_decodes_the_same_rows(single_device):
    (hypotheses, _), _ = generated_texts(backend="pmap")
    assert hypotheses == single_device[0][0][0]


def test_results_are_the_shared_scores(single_device):
    (hypotheses, references), results = single_device[0]
    assert results["c/examples"] == 7 and results["c/sample"] == {"generated": hypotheses[0],
                                                                  "reference": references[0]}
    assert results["c/exact_match"] == 0.0 and 0.0 <= results["c/bleu"] <= 100.0
