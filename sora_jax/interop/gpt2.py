"""A GPT-2-family checkpoint (Hugging Face `GPT2Model` / `GPT2LMHeadModel` layout) as the Sora
`TextDecoder`.

GPT-2 is token + learned position embeddings, pre-norm blocks (x + attn(LN(x)); x + FFN(LN(x)))
with a tanh-GELU feed-forward, a final LayerNorm and the output tied to the token embedding: our
decoder with norm_position="pre" and mlp_activation="gelu_tanh". GPT-2's Conv1D weights are
already [in, out]; its attention projection is one fused [D, 3D] matrix, split here into q/k/v.
Imported into a decoder with cross_attention=True, the cross-attention layers keep their fresh
initialisation (the rest is GPT-2).
"""

from __future__ import annotations

import numpy as np

from sora_jax.interop.bert import ACTIVATIONS
from sora_jax.interop.hf_checkpoint import CheckpointImportError, HFCheckpoint

# Causal-mask buffers older files store next to the weights.
IGNORABLE_SUFFIXES = ("attn.bias", "attn.masked_bias")


def decoder_settings(ckpt: HFCheckpoint) -> dict:
    """The TextDecoderConfig fields that config.json determines; anything else is an error."""
    ckpt.require("model_type", ("gpt2",), why="other families name or arrange their weights differently")
    act = ckpt.require("activation_function", tuple(ACTIVATIONS), default="gelu_new")
    ckpt.require("scale_attn_weights", (True,), default=True, why="attention logits are always scaled by "
                 "1/sqrt(head_dim)")
    ckpt.unsupported("scale_attn_by_inverse_layer_idx", True, "the decoder scales every layer alike")
    ckpt.unsupported("add_cross_attention", True, "import the GPT-2 self-attention stack; the Sora decoder "
                     "adds its own cross-attention with model.decoder.cross_attention")
    d_model, heads = ckpt.integer("n_embd"), ckpt.integer("n_head")
    if d_model % heads:
        raise CheckpointImportError(f"{ckpt.config_path}: field 'n_head' = {heads} does not divide n_embd {d_model}")
    return dict(num_layers=ckpt.integer("n_layer"), d_model=d_model, num_heads=heads, num_kv_heads=0, head_dim=0,
                mlp_dim=ckpt.integer("n_inner", 4 * d_model), mlp_activation=ACTIVATIONS[act], norm="layernorm",
                norm_position="pre", norm_eps=ckpt.number("layer_norm_epsilon", 1e-5), use_bias=True,
                vocab_size=ckpt.integer("vocab_size"), max_len=ckpt.integer("n_positions"), position="learned",
                tie_embeddings=bool(ckpt.get("tie_word_embeddings", True)))


def decoder_params(ckpt: HFCheckpoint, settings: dict) -> dict:
    """The TextDecoder parameter tree (unrolled layers: blocks/layer_i), float32 numpy."""
    ckpt.strip_prefix("transformer.")
    D, N, F, V = settings["d_model"], settings["num_heads"], settings["mlp_dim"], settings["vocab_size"]
    H = D // N

    def norm(prefix):
        return {"scale": ckpt.take(f"{prefix}.weight", (D,)), "bias": ckpt.take(f"{prefix}.bias", (D,))}

    def conv1d(prefix, n_in, n_out):
        return {"kernel": ckpt.take(f"{prefix}.weight", (n_in, n_out)), "bias": ckpt.take(f"{prefix}.bias", (n_out,))}

    def layer(i):
        pre = f"h.{i}"
        qkv = conv1d(f"{pre}.attn.c_attn", D, 3 * D)
        kernels, biases = np.split(qkv["kernel"], 3, axis=1), np.split(qkv["bias"], 3)
        attention = {name: {"kernel": k.reshape(D, N, H), "bias": b.reshape(N, H)}
                     for name, k, b in zip(("query", "key", "value"), kernels, biases)}
        out = conv1d(f"{pre}.attn.c_proj", D, D)
        attention["out"] = {"kernel": out["kernel"].reshape(N, H, D), "bias": out["bias"]}
        return {"self_attention": attention, "self_attention_norm": norm(f"{pre}.ln_1"),
                "mlp": {"wi": conv1d(f"{pre}.mlp.c_fc", D, F), "wo": conv1d(f"{pre}.mlp.c_proj", F, D)},
                "mlp_norm": norm(f"{pre}.ln_2")}

    params = {
        "embedding": {"token_embed": {"embedding": ckpt.take("wte.weight", (V, D))},
                      "position_embed": {"embedding": ckpt.take("wpe.weight", (settings["max_len"], D))}},
        "blocks": {f"layer_{i}": layer(i) for i in range(settings["num_layers"])},
        "final_norm": norm("ln_f"),
    }
    if settings["tie_embeddings"]:
        if "lm_head.weight" in ckpt.tensors():  # a saved copy of the tied table
            if not np.array_equal(ckpt.take("lm_head.weight", (V, D)), params["embedding"]["token_embed"]["embedding"]):
                raise CheckpointImportError(f"{ckpt.weights_path}: tensor 'lm_head.weight' differs from 'wte.weight' "
                                            f"but config.json ties them (tie_word_embeddings)")
    else:
        params["lm_head"] = {"kernel": ckpt.take("lm_head.weight", (V, D)).T}
    return params
