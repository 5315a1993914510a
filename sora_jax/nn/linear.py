"""Dense and embedding layers whose parameters carry logical axis names.

Every parameter in sora_jax is created through `nn.with_logical_partitioning`, so the trainer
can map names such as "embed" or "mlp" to mesh axes by rules kept in config.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sora_jax.nn.low_precision_matmul import is_low_precision, low_precision_matmul

Dtype = Any


def logical(init, names: Sequence[str | None]):
    return nn.with_logical_partitioning(init, tuple(names))


def take_rows(table, ids, row_axis: str):
    """table[ids] for a [rows, embed] table, gathered whole along "embed" first (FSDP's all-gather
    before use, as XLA does for matmul weights by itself). Looked up from an embed-sharded table,
    the rows come out sharded by embed, and XLA's partitioner can turn that into the batch
    sharding of the activations only by replicating them ("Involuntary full rematerialization")."""
    return jnp.take(nn.with_logical_constraint(table, (row_axis, None)), ids, axis=0)


def matmul_trailing(x, kernel, num_in: int, *, bias=None, transpose_kernel=False, preferred_element_type=None):
    """x [..., in_dims] . kernel [in_dims, out_dims] -> [..., out_dims] (transpose_kernel: kernel is
    [out_dims, in_dims]), plus bias [out_dims] if given, computed as one 2-D matmul over the
    flattened leading axes.

    The same product as a dot_general over the unflattened axes, but for that form XLA:CPU computes
    the weight gradient (a contraction over batch and length together) as a transposed copy of the
    output gradient feeding a slow matmul; flattened, it is one fast matmul. The 6-layer, 384-wide
    benchmark LM's train step: 1,680 -> 1,480 ms. Reshaping leading axes is free elsewhere.

    The product is computed in x's dtype; the kernel is cast to it. bfloat16 / float16 x go
    through `low_precision_matmul` (float32 accumulation, the gradient in the kernel's dtype), and
    so do float32 layers with more inputs than outputs on CPU (a faster weight gradient)."""
    lead = x.shape[:x.ndim - num_in]
    in_size = math.prod(x.shape[x.ndim - num_in:])
    if transpose_kernel:
        out_dims = kernel.shape[:kernel.ndim - num_in]
        k2 = kernel.reshape(math.prod(out_dims), in_size)
        contract = ((1,), (1,))
    else:
        out_dims = kernel.shape[num_in:]
        k2 = kernel.reshape(in_size, math.prod(out_dims))
        contract = ((1,), (0,))
    x2 = x.reshape(math.prod(lead), in_size)
    narrowing_on_cpu = (jax.default_backend() == "cpu" and x.dtype == jnp.float32 and not transpose_kernel
                        and in_size > math.prod(out_dims))
    if is_low_precision(x.dtype) or narrowing_on_cpu:  # kernel and bias are cast inside
        bias2 = None if bias is None else bias.reshape(-1)
        y = low_precision_matmul(x2, k2, bias2, transpose_kernel, jnp.dtype(preferred_element_type or x.dtype))
        return y.reshape(lead + tuple(out_dims))
    y = jax.lax.dot_general(x2, k2.astype(x.dtype), (contract, ((), ())),
                            preferred_element_type=preferred_element_type).reshape(lead + tuple(out_dims))
    if bias is not None:
        y = y + bias.astype(y.dtype).reshape((1,) * len(lead) + tuple(out_dims))
    return y


class Linear(nn.Module):
    """y = x . W + b contracting the trailing `num_in` axes of x with the leading axes of W.

    The kernel is created in its final shape (in_dims + features) with its logical names, with
    LeCun-normal scaling over all input axes. (flax's DenseGeneral creates a flat kernel and
    reshapes it, which breaks under logical sharding rules.)"""

    features: tuple[int, ...]
    kernel_axes: tuple[str, ...]
    num_in: int = 1
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernel_init: Any = None

    @nn.compact
    def __call__(self, x, *, weights_only=False):
        """y; or, with weights_only, (kernel, bias or None) for an x of this shape, not applied (so a
        caller can fuse several projections of the same input into one matmul)."""
        in_dims = x.shape[-self.num_in:]
        n_in, n_out = len(in_dims), len(self.features)
        init = self.kernel_init or nn.initializers.variance_scaling(
            1.0, "fan_in", "truncated_normal", in_axis=tuple(range(n_in)), out_axis=tuple(range(n_in, n_in + n_out)))
        kernel = self.param("kernel", logical(init, self.kernel_axes), tuple(in_dims) + tuple(self.features),
                            self.param_dtype)
        bias = None
        if self.use_bias:
            bias = self.param("bias", logical(nn.initializers.zeros_init(), self.kernel_axes[n_in:]),
                              tuple(self.features), self.param_dtype)
        if weights_only:
            return kernel, bias
        return matmul_trailing(x.astype(self.dtype), kernel, n_in, bias=bias)


def dense(features, kernel_axes, *, axis=-1, use_bias=True, dtype=jnp.float32,
          param_dtype=jnp.float32, kernel_init=None, name=None):
    """A Linear layer whose kernel is named `kernel_axes` (input axes then output axes) and whose
    bias takes the output axes' names. axis: -1, or a tuple of trailing axes, e.g. (-2, -1)."""
    features = (features,) if isinstance(features, int) else tuple(features)
    num_in = len(axis) if isinstance(axis, (tuple, list)) else 1
    if len(kernel_axes) != num_in + len(features):
        raise ValueError(f"kernel_axes {kernel_axes} must name {num_in} input and {len(features)} output axes")
    return Linear(features, tuple(kernel_axes), num_in, use_bias, dtype, param_dtype, kernel_init, name=name)


class Embed(nn.Module):
    """Token embedding table [vocab, embed]; `attend` gives tied output logits in float32."""

    num_embeddings: int
    features: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    axes: tuple[str, str] = ("vocab", "embed")
    embedding_init: Any = nn.initializers.normal(stddev=0.02)

    def setup(self):
        self.embedding = self.param(
            "embedding", logical(self.embedding_init, self.axes),
            (self.num_embeddings, self.features), self.param_dtype)

    def __call__(self, ids):
        return take_rows(self.embedding, ids, self.axes[0]).astype(self.dtype)

    def attend(self, x_BxTxD):
        return matmul_trailing(x_BxTxD.astype(self.dtype), jnp.asarray(self.embedding), 1, transpose_kernel=True,
                               preferred_element_type=jnp.float32)
