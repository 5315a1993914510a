"""Creating the train state directly sharded: abstract shapes -> shardings -> jit(init, out_shardings)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from sora_jax.data.schema import ExampleSpec
from sora_jax.models.sora import SoraModel
from sora_jax.train import init_from
from sora_jax.train.errors import ConfigurationError
from sora_jax.train.partitioning import state_shardings
from sora_jax.train.state import TrainState


def init_inputs(spec: ExampleSpec, model: SoraModel):
    """Dummy inputs that create exactly the parts the data will use (parameters do not depend on
    sequence lengths, so short ones do)."""
    cfg = model.cfg
    text = text_valid = images = tokens = None
    if spec.text_len:
        text = jnp.zeros((1, min(8, cfg.text_encoder.max_len)), jnp.int32)
        text_valid = jnp.ones_like(text, bool)
    if spec.image_size:
        size = cfg.image_encoder.image_size
        images = jnp.zeros((1, size, size, cfg.image_encoder.in_channels), jnp.float32)
    if spec.decoder_len:
        tokens = jnp.zeros((1, min(8, cfg.decoder.max_len)), jnp.int32)
    if tokens is not None and text is None and images is None and cfg.decoder.cross_attention:
        raise ConfigurationError("config key model.decoder.cross_attention: the data has no text or image inputs "
                                 "to attend to; set it to False for a pure language model")
    return text, text_valid, images, tokens


def _init_fn(model, tx, inputs, gan=None):
    text, text_valid, images, tokens = inputs

    def init(rng):
        if text is None and images is None:
            variables = model.init(rng, tokens, method=SoraModel.decode)
        else:
            variables = model.init(rng, text, text_valid, images, tokens)
        gan_state = None if gan is None else gan.init_state(jax.random.fold_in(rng, 1))
        return TrainState.create(variables["params"], tx, gan_state)
    return init


# Initialisation is traced without logical rules in scope: flax's DenseGeneral unboxes its flat
# kernel before reshaping it, and a rank-3 constraint on that rank-2 array would fail. Placement
# comes from the explicit out_shardings instead.

def create_state(model, tx, spec: ExampleSpec, mesh, rules, rng, gan=None, pretrained=None, shardings=None):
    """(state, shardings): every parameter and optimizer leaf created on its shards.
    pretrained: {part: parameter tree} imported weights (init_from.load) put in place of the fresh
    ones, on the same shards (the optimizer state does not depend on parameter values).
    shardings: those `abstract_state` gave for the same arguments, to skip tracing the model
    once more (a whole forward pass of it: ~0.4 s of a trainer's start on 2 cores)."""
    init = _init_fn(model, tx, init_inputs(spec, model), gan)
    if shardings is None:
        shardings = state_shardings(jax.eval_shape(init, rng), mesh, rules)
    with jax.set_mesh(mesh):
        state = jax.jit(lambda r: nn.unbox(init(r)), out_shardings=shardings)(rng)
    if pretrained:
        state = state.replace(params=init_from.graft_into(state.params, pretrained))
    return state, shardings


def abstract_state(model, tx, spec: ExampleSpec, mesh, rules, gan=None):
    """Shapes, dtypes and shardings of the state without allocating it (for restoring)."""
    init = _init_fn(model, tx, init_inputs(spec, model), gan)
    abstract = jax.eval_shape(init, jax.random.key(0))
    shardings = state_shardings(abstract, mesh, rules)
    plain = nn.unbox(abstract)
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), plain, shardings), shardings
