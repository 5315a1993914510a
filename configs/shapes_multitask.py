"""Compositional generalisation on the shapes world: captioning, VQA and classification together,
with two colour/shape combinations held out of training.

    python -m sora_jax.main --config=configs/shapes_multitask.py --workdir=runs/shapes_multitask
    python -m sora_jax.evaluate --workdir=runs/shapes_multitask            # greedy exact match, BLEU, ROUGE
    # the held-out combinations:
    python -m sora_jax.evaluate --workdir=runs/shapes_multitask --split=holdout

A width-128 model at 32x32 pixels on SentencePiece word pieces, 2,000 steps of batch 64: 27
minutes on the 2-core CPU machine. Measured there (full validation split, greedy decoding):
caption exact match 0.48 (BLEU 64, ROUGE-L 0.83), VQA exact match 0.73, shape classification
0.91; all still rising at the last step. The issue's aim of 0.9 exact match for both within 30
minutes is not reached yet.
"""

from configs import base


def get_config(arg=None):
    c = base.get_config()
    c.data.name = "mixture"
    c.data.mixture = base.mixture(caption=("shapes", "caption", 2), vqa=("shapes", "vqa", 2),
                                  classify=("shapes", "classify", 1))
    c.data.shapes.holdout = "red/triangle,blue/circle"
    c.data.image_size = 32
    # Word pieces trained at start-up on the shapes texts: a question is ~8 pieces and a three-object
    # caption ~20 (bytes would truncate questions at text_len and cost 4x the positions).
    c.data.tokenizer = "sentencepiece:train"
    c.data.vocab_size = 512  # an upper bound: the shapes vocabulary yields fewer pieces
    c.data.text_len = 16
    c.data.decoder_len = 32
    c.data.batch_size = 64

    m = c.model
    for part in (m.text_encoder, m.fusion, m.decoder):
        part.d_model, part.num_heads, part.mlp_dim = 128, 4, 512
    m.text_encoder.num_layers, m.fusion.num_layers, m.decoder.num_layers = 2, 2, 3
    m.text_encoder.max_len, m.decoder.max_len = 16, 32
    m.text_encoder.vocab_size = m.decoder.vocab_size = 512
    m.image_encoder.image_size, m.image_encoder.d_model = 32, 128
    m.image_encoder.stage_features, m.image_encoder.blocks_per_stage = (32, 64, 128), (1, 1, 1)
    m.num_classes = 3

    c.train.num_steps = 2000
    c.train.eval_every = 500
    c.train.eval_generate_batches = 2  # greedy exact match / BLEU on 2 batches at each eval
    c.train.checkpoint_every = 500
    c.optim.learning_rate = 1.5e-3
    c.optim.warmup_steps = 100
    return c
