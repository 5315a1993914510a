"""A BERT-family checkpoint (Hugging Face `BertModel` layout) as the Sora `TextEncoder`.

BERT is word + position + token-type embeddings, a LayerNorm over their sum, then post-norm
blocks (x = LN(x + attention(x)); x = LN(x + FFN(x))) with biases everywhere: our encoder with
norm_position="post", embed_norm=True and type_vocab_size > 0. Torch Linear weights are
[out, in]; ours are [in, heads, head_dim] / [heads, head_dim, out].
"""

from __future__ import annotations

from sora_jax.interop.hf_checkpoint import CheckpointImportError, HFCheckpoint

# Hugging Face activation names -> ours ("gelu" is the exact erf form in both).
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}
# Tensors a BertModel / BertForPreTraining file may hold that the encoder has no use for.
IGNORABLE_PREFIXES = ("pooler.", "cls.")
IGNORABLE_SUFFIXES = ("position_ids",)


def encoder_settings(ckpt: HFCheckpoint) -> dict:
    """The TextEncoderConfig fields that config.json determines; anything else is an error."""
    ckpt.require("model_type", ("bert",), why="other families name or arrange their weights differently")
    ckpt.require("position_embedding_type", ("absolute",), default="absolute",
                 why="the encoder has learned absolute positions only")
    ckpt.unsupported("is_decoder", True, "a causal BERT is not an encoder")
    ckpt.unsupported("add_cross_attention", True, "the text encoder has no cross-attention")
    act = ckpt.require("hidden_act", tuple(ACTIVATIONS), default="gelu")
    d_model, heads = ckpt.integer("hidden_size"), ckpt.integer("num_attention_heads")
    ckpt.require("embedding_size", (d_model,), default=d_model,
                 why="embeddings narrower than hidden_size (ALBERT, ELECTRA) need a projection the encoder lacks")
    if d_model % heads:
        raise CheckpointImportError(f"{ckpt.config_path}: field 'num_attention_heads' = {heads} does not divide "
                                    f"hidden_size {d_model}")
    return dict(num_layers=ckpt.integer("num_hidden_layers"), d_model=d_model, num_heads=heads, num_kv_heads=0,
                head_dim=0, mlp_dim=ckpt.integer("intermediate_size"), mlp_activation=ACTIVATIONS[act],
                norm="layernorm", norm_position="post", norm_eps=ckpt.number("layer_norm_eps", 1e-12),
                use_bias=True, vocab_size=ckpt.integer("vocab_size"),
                max_len=ckpt.integer("max_position_embeddings"), position="learned",
                type_vocab_size=ckpt.integer("type_vocab_size", 2), embed_norm=True)


def encoder_params(ckpt: HFCheckpoint, settings: dict) -> dict:
    """The TextEncoder parameter tree (unrolled layers: blocks/layer_i), float32 numpy."""
    ckpt.strip_prefix("bert.")
    D, N, F = settings["d_model"], settings["num_heads"], settings["mlp_dim"]
    H = D // N

    def norm(prefix):
        return {"scale": ckpt.take_first([f"{prefix}.weight", f"{prefix}.gamma"], (D,)),
                "bias": ckpt.take_first([f"{prefix}.bias", f"{prefix}.beta"], (D,))}

    def dense(prefix, n_in, n_out):
        return {"kernel": ckpt.take(f"{prefix}.weight", (n_out, n_in)).T,
                "bias": ckpt.take(f"{prefix}.bias", (n_out,))}

    def heads_in(prefix):  # [D] -> [N, H]
        p = dense(prefix, D, D)
        return {"kernel": p["kernel"].reshape(D, N, H), "bias": p["bias"].reshape(N, H)}

    def heads_out(prefix):  # [N, H] -> [D]
        p = dense(prefix, D, D)
        return {"kernel": p["kernel"].reshape(N, H, D), "bias": p["bias"]}

    def layer(i):
        pre = f"encoder.layer.{i}"
        return {
            "self_attention": {"query": heads_in(f"{pre}.attention.self.query"),
                               "key": heads_in(f"{pre}.attention.self.key"),
                               "value": heads_in(f"{pre}.attention.self.value"),
                               "out": heads_out(f"{pre}.attention.output.dense")},
            "self_attention_norm": norm(f"{pre}.attention.output.LayerNorm"),
            "mlp": {"wi": dense(f"{pre}.intermediate.dense", D, F), "wo": dense(f"{pre}.output.dense", F, D)},
            "mlp_norm": norm(f"{pre}.output.LayerNorm"),
        }

    embedding = {
        "token_embed": {"embedding": ckpt.take("embeddings.word_embeddings.weight", (settings["vocab_size"], D))},
        "position_embed": {"embedding": ckpt.take("embeddings.position_embeddings.weight",
                                                  (settings["max_len"], D))},
        "type_embed": {"embedding": ckpt.take("embeddings.token_type_embeddings.weight",
                                              (settings["type_vocab_size"], D))},
        "norm": norm("embeddings.LayerNorm"),
    }
    blocks = {f"layer_{i}": layer(i) for i in range(settings["num_layers"])}
    return {"embedding": embedding, "blocks": blocks}
