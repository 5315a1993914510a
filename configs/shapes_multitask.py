"""Compositional generalisation on the shapes world: captioning, VQA and classification together,
with two colour/shape combinations held out of training.

    python -m sora_jax.main --config=configs/shapes_multitask.py --workdir=runs/shapes_multitask
    python -m sora_jax.evaluate --workdir=runs/shapes_multitask            # greedy exact match, BLEU, ROUGE
    # the held-out combinations:
    python -m sora_jax.evaluate --workdir=runs/shapes_multitask --split=holdout

A width-128 model at 32x32 pixels on BPE word pieces, 3,600 steps of batch 64, learning rate
1e-3, half the training VQA questions "is there a C S?" (data.shapes.existence_share=0.5; the
evaluation splits keep the natural mix) and the VQA loss counted twice (classify half). Measured
on the 2-core CPU machine on 2026-12-01 (full validation split, greedy decoding), with the
flattened dense matmuls, erf GELU and hand-written norm derivatives of that day: 1,326 s (22
minutes) from launch to the last eval; caption exact match 0.910 (BLEU 95.7, ROUGE-L 0.97), VQA
exact match 0.967, shape classification 0.926; held-out combinations (--split=holdout, no aim
there): caption 0.087, VQA 0.686, classify 0.708. The issue's aim (0.9 for both within 30
minutes) is met by that run, not by every seed: --config.seed=1, same code and day, gave caption
0.876 (BLEU 93.6), VQA 0.971, classify 0.905 in 1,296 s (caption / VQA at steps 1,800 and 2,700:
0.676 / 0.845, 0.816 / 0.945, still climbing). Exact match moves by several points from run to
run (data order, and any change of kernels: seed 0 gave 0.919 / 0.905 with the flattened matmuls
and the erf GELU but flax's norms, and 0.910 / 0.935 in 1,560 s with the code before both, on a
day the machine ran ~1.3x slower); caption is the one near 0.9.

What moved VQA from 0.881 to 0.935 and caption from 0.854 to 0.910 over the settings before
(learning rate 1.5e-3, the same loss weights and questions): the learning rate. 1e-3 is ahead at
every eval (caption / VQA at steps 900, 1,800, 2,700: 0.482 / 0.680, 0.727 / 0.852, 0.870 /
0.898, against 0.433 / 0.599, 0.680 / 0.797, 0.789 / 0.875); 2.5e-3 was far behind (0.517 /
0.644 at step 1,800, stopped there). Until then the aim was a trade-off: the loss weights that
make the model use the colour word of an existence question cost captions (see below).

What moved it from 0.737 / 0.850 (2,800 steps, 29 minutes): the tokenizer. The unigram
SentencePiece model trained on these texts had ~60 pieces and spelled "above" and "what shape"
letter by letter (17 pieces for a median caption, up to 16 for a question, so some questions
lost their end at text_len 16). BPE gives one piece per word (9 and 7), which halves the decoder
rows (decoder_len 16, text_len 10), makes the step ~20% cheaper and the exact-match sequence half
as long. Unrolled stacks and a prefetch thread add ~5%; the time goes to 3,600 steps.

Before that (0.737 / 0.850): a stride-2 stem with two stages (64 and 128 channels, the same 8x8
token grid, ~25% cheaper), ReLU MLPs and rotary text positions (from 0.48 / 0.73).

History (full validation split; learning rate 1.5e-3, the natural question mix and loss weights
1 unless said). Where VQA lost its points: "is there a C S?". The model answered it from the
shape word alone ("is there a green circle?" beside a red circle: "yes"); on training scenes it gave "yes"
a probability of ~0.55-0.63 whatever the answer: the mixture never fits these questions. They
are learnable: 400 steps of batch 64 on existence questions alone, starting from a trained run,
take their validation accuracy from 0.59 to 0.92. What the other question kinds need (finding
the object a word names) matures late, and ~8 existence questions per batch after that are too
few. Also tried this way without gain (full validation split, this machine: ~1,500 s a run):
model.share_text_embeddings=True (0.896 / 0.805; "what color is the S" in two-object scenes
0.61 -> 0.85, but existence questions all "yes"), the same with VQA weight 3 and classify 0.5
(0.848 / 0.841), and drawing 75% of the training "no" questions among near misses (a colour or
shape of the scene; 0.854 VQA, existence questions no better; the option was not kept).

A closer look (2026-12-01, probing trained runs): the model ignores the colour word of an
existence question. On one-object scenes, "is there a C S?" about the object's shape gets
P(yes) ~0.7 for every colour C, the right one or not; "no" is right only when the shape is
missing (what "how many Ss are there?" teaches), and this stays so from step 1,800 to the end.
Two training-data changes measured on this config (full validation split, ~1,380 s a run):
data.shapes.existence_share=0.5 (half the training VQA questions are existence ones, against
~28%; validation keeps the standard mix): caption 0.889, VQA 0.881, classify 0.921, colour
still ignored; adding "how many C objects are there?" to the training questions (the only kind
that would teach a missing colour; a patch, not kept): 0.873 / 0.786 / 0.919, existence
questions near chance.
What does change it is the loss weight: with existence_share=0.5 and train.task_weights.vqa=3
(the VQA loss counted three times against caption and classify 1), the same probe gives P(yes)
0.90 when the colour is right and 0.21 when it is missing, VQA reaches 0.897, but captions fall
to 0.732 (classify 0.923; 1,491 s): at weight 1 the existence questions never get enough of the shared
update to bind the colour (each task's loss is a mean over its own target tokens; half of VQA's
are the trivial EOS, so existence answers are ~5% of the loss at the default weights).
In between, existence_share=0.5 with task_weights vqa=2 and classify=0.5 (1,509 s): VQA 0.905,
the first run over 0.9, but captions 0.854 (BLEU 93.2) and classify 0.924; colour is used again
(one-object scenes: P(yes) 0.73 right colour, 0.53 missing): the settings of this config, whose
learning rate was then lowered to 1e-3.

Measured next (2026-12-01, a host ~1.3x slower that day: 2.0 steps/s against 2.6; trainer's final
eval on the full validation split), all with existence_share=0.5 and classify weight 0.5:
VQA weight 1.5 over 4,000 steps: caption 0.896, VQA 0.855 (2,121 s there), the colour still
ignored. Near misses for the "no" questions (80% of them naming a shape of the scene in a colour it
lacks, against ~52% drawn uniformly; a patch, not kept) with VQA weight 1.25: caption 0.920, the
best yet, but VQA 0.802: the model traded the shape-only shortcut for a colour-only one ("is
there a red S?" beside a red object of another shape: "yes"). Continuing that run's step-2,700
checkpoint for its last 900 steps with the standard questions and VQA weight 3: caption 0.883,
VQA 0.867, and the colour is ignored again (one-object near misses 0.21): a late boost does not
teach the binding. Learning rate 2.5e-3 with VQA weight 2 was far behind 1.5e-3 at step 1,800
(caption 0.517 / VQA 0.644 against 0.680 / 0.797) and was stopped there.

Tried without gain (full validation split, 2 cores): ten times the training scenes
(data.shapes.num_train=200000: 0.740 / 0.816 with the unigram pieces); VQA weight 2.5 and
classify 0.5 with BPE (0.754 / 0.841 in 1,669 s); CoordConv x/y input channels on the image
(caption loss behind the plain run throughout; stopped at 2,100 steps).
"""

from configs import base


def get_config(arg=None):
    c = base.get_config()
    c.data.name = "mixture"
    c.data.mixture = base.mixture(caption=("shapes", "caption", 2), vqa=("shapes", "vqa", 2),
                                  classify=("shapes", "classify", 1))
    c.data.shapes.holdout = "red/triangle,blue/circle"
    # Half the training VQA questions ask "is there a C S?" (naturally ~28%), and the VQA loss counts
    # twice: at weight 1 these questions never bind the colour word to the shape (see above).
    c.data.shapes.existence_share = 0.5
    c.train.task_weights.vqa = 2.0
    c.train.task_weights.classify = 0.5
    c.data.image_size = 32
    # BPE word pieces trained at start-up on the shapes texts: one piece per word, so a question is
    # at most 7 pieces and a three-object caption 14 (bytes would cost ~5x the positions).
    c.data.tokenizer = "sentencepiece:train"
    c.data.sentencepiece_type = "bpe"  # one piece per word (unigram spelled "above" letter by letter)
    c.data.vocab_size = 512  # an upper bound
    c.data.text_len = 10  # the longest question is 7 pieces, plus bos and eos
    c.data.decoder_len = 16  # the longest caption is 14 pieces, plus bos / eos
    c.data.batch_size = 64
    c.data.prefetch_batches = 2  # the next batches are assembled while the step runs

    m = c.model
    for part in (m.text_encoder, m.fusion, m.decoder):
        part.d_model, part.num_heads, part.mlp_dim = 128, 4, 512
    m.text_encoder.num_layers, m.fusion.num_layers, m.decoder.num_layers = 2, 2, 3
    m.text_encoder.max_len, m.decoder.max_len = 10, 16
    m.text_encoder.vocab_size = m.decoder.vocab_size = 512
    for part in (m.text_encoder, m.fusion, m.decoder):
        part.mlp_activation = "relu"
        # Two or three layers each: unrolled, they skip the scan's per-layer slicing and stacking
        # of parameters and activations (with the prefetch thread, ~5% more steps per second).
        part.scan_layers = False
    m.text_encoder.position = m.decoder.position = "rope"
    m.image_encoder.image_size, m.image_encoder.d_model = 32, 128
    # The stem halves the resolution; two stages (16x16, then 8x8 with two blocks) give an 8x8 grid
    # of tokens, whose receptive field (>= 23 px) covers a large (14 px) object.
    m.image_encoder.stem_stride = 2
    m.image_encoder.stage_features, m.image_encoder.blocks_per_stage = (64, 128), (1, 2)
    m.num_classes = 3

    c.train.num_steps = 3600
    c.train.eval_every = 900
    c.train.eval_generate_batches = 2  # greedy exact match / BLEU on 2 batches at each eval
    c.train.checkpoint_every = 900
    c.optim.learning_rate = 1e-3  # 1.5e-3 and 2.5e-3 trained slower (see above)
    c.optim.warmup_steps = 100
    return c
