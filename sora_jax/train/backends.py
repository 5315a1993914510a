"""Two ways to run the step on many devices, behind one interface:

  JitBackend:  jax.jit with NamedShardings on the ("data", "fsdp", "tensor") mesh (data, FSDP and
               tensor parallelism by the logical-axis rules); the state is donated into the step.
  PmapBackend: jax.pmap over this process's devices, state replicated, gradients summed with psum
               (plain data parallelism).

Checkpoints hold the same (unreplicated) state for both.
"""

from __future__ import annotations


import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from sora_jax.train import init as init_lib
from sora_jax.train import partitioning
from sora_jax.train.step import make_eval_step, make_train_step


class JitBackend:
    name = "jit"

    def __init__(self, model, tx, schedule, spec, mesh, rules, step_kwargs):
        self.model, self.tx, self.spec, self.mesh, self.rules = model, tx, spec, mesh, rules
        self.gan = step_kwargs.get("gan")
        self._abstract, self.state_shardings = init_lib.abstract_state(model, tx, spec, mesh, rules, self.gan)
        self._batch_sharding = partitioning.batch_sharding(mesh, rules)
        self._replicated = partitioning.replicated(mesh)
        self._compiled = {}
        train_step = make_train_step(model, tx, schedule, **step_kwargs)
        eval_step = make_eval_step(model)
        with partitioning.sharding_context(mesh, rules):
            self._step = jax.jit(train_step, in_shardings=(self.state_shardings, self._batch_sharding, self._replicated),
                                 out_shardings=(self.state_shardings, self._replicated), donate_argnums=0)
            self._eval = jax.jit(eval_step, in_shardings=(self.state_shardings.params, self._batch_sharding),
                                 out_shardings=self._replicated)

    def init(self, rng, pretrained=None):
        state, _ = init_lib.create_state(self.model, self.tx, self.spec, self.mesh, self.rules, rng, self.gan,
                                         pretrained, self.state_shardings)
        return state

    def abstract_state(self):
        return self._abstract

    def place_restored(self, state):
        return state  # restored straight onto its shardings

    def put_batch(self, local_batch):
        """This process's rows -> one global array per field, sharded over the batch axes."""
        return jax.tree.map(lambda x: jax.make_array_from_process_local_data(self._batch_sharding, x), local_batch)

    def step(self, state, batch, rng):
        with partitioning.sharding_context(self.mesh, self.rules):
            return self._step(state, batch, rng)

    def evaluate(self, state, batch):
        with partitioning.sharding_context(self.mesh, self.rules):
            return self._eval(state.params, batch)

    def host_state(self, state):
        return state

    def run(self, fn, *args):
        """fn(*args) jit-compiled on the mesh (arguments keep their shardings), result replicated."""
        if fn not in self._compiled:
            self._compiled[fn] = jax.jit(fn, out_shardings=self._replicated)
        with partitioning.sharding_context(self.mesh, self.rules):
            return self._compiled[fn](*args)


class PmapBackend:
    name = "pmap"

    def __init__(self, model, tx, schedule, spec, mesh, rules, step_kwargs):
        self.model, self.tx, self.spec = model, tx, spec
        self.gan = step_kwargs.get("gan")
        self._compiled = {}
        self.devices = jax.local_devices()
        # pmap's leading axis laid over this process's devices (what device_put_replicated did).
        self._per_device = NamedSharding(Mesh(np.asarray(self.devices), ("devices",)), P("devices"))
        self._single = partitioning.replicated(jax.sharding.Mesh(np.asarray(self.devices[:1]).reshape(1, 1, 1),
                                                                 ("data", "fsdp", "tensor")))
        self._abstract, self._single_shardings = init_lib.abstract_state(model, tx, spec, self._single.mesh, (),
                                                                         self.gan)
        self._abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=self._single),
                                      self._abstract)
        train_step = make_train_step(model, tx, schedule, axis_name="batch", **step_kwargs)
        eval_step = make_eval_step(model, axis_name="batch")
        self._step = jax.pmap(train_step, axis_name="batch", in_axes=(0, 0, None), donate_argnums=0)
        self._eval = jax.pmap(eval_step, axis_name="batch")

    def init(self, rng, pretrained=None):
        state, _ = init_lib.create_state(self.model, self.tx, self.spec, self._single.mesh, (), rng, self.gan,
                                         pretrained, self._single_shardings)
        return self.place_restored(state)

    def abstract_state(self):
        return self._abstract

    def place_restored(self, state):
        n = len(self.devices)
        return jax.device_put(jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (n,) + x.shape), state),
                              self._per_device)

    def put_batch(self, local_batch):
        n = len(self.devices)

        def split(x):
            if x.shape[0] % n:
                raise ValueError(f"per-process batch {x.shape[0]} is not divisible by the {n} local devices (pmap)")
            return x.reshape((n, x.shape[0] // n) + x.shape[1:])
        return jax.device_put(jax.tree.map(split, local_batch), self._per_device)

    def step(self, state, batch, rng):
        state, metrics = self._step(state, batch, rng)
        return state, jax.tree.map(lambda m: m[0], metrics)  # identical on every device after psum

    def evaluate(self, state, batch):
        return jax.tree.map(lambda m: m[0], self._eval(state.params, batch))

    def host_state(self, state):
        return jax.tree.map(lambda x: x[0], state)

    def run(self, fn, *args):
        """fn(*args) jit-compiled on one device (host_state's arrays live on the first device)."""
        if fn not in self._compiled:
            self._compiled[fn] = jax.jit(fn)
        return self._compiled[fn](*args)


BACKENDS = {"jit": JitBackend, "pmap": PmapBackend}


def make_backend(name, *args):
    from sora_jax.train.errors import ConfigurationError
    if name not in BACKENDS:
        raise ConfigurationError(f"config key parallel.backend: {name!r} is not one of {', '.join(BACKENDS)}")
    return BACKENDS[name](*args)


