"""Inpainting on the shapes world: 16x16 scenes of one to three objects with random box and
brush-stroke holes; the generator sees the masked image, the mask and the caption (U-Net encoder
skips into its upsampling stack) and keeps the known pixels exactly.

    python -m sora_jax.main --config=configs/shapes_inpaint.py --workdir=runs/shapes_inpaint
    python -m sora_jax.generate --workdir=runs/shapes_inpaint --task=inpaint --image=IN.png \\
        --mask=MASK.png --prompt="a large red circle above a small blue square" --out=completed.png

Measured on 2 CPU cores: 5 min 12 s for the 800 steps and two evals (13 minutes before R1 was
split over rows on CPU); on 512 validation holes the EMA generator's L1 is 0.093 against 0.303
for a mean-colour fill (gan/hole_l1_ratio 0.306, target <= 1/3; 0.424 at step 400), hole PSNR
17.2 dB; original | masked | completed panels under DIR/samples/.
"""

from configs import base


def get_config(arg=None):
    c = base.small_gan(base.get_config(), "shapes", "inpaint", text_len=48, inpaint=True)
    c.data.shapes.num_validation = 512
    c.data.mask_kind = "mixed"
    c.model.text_encoder.max_len = 64  # the setting measured below (only data.text_len = 48 are used)
    c.gan.l1_weight = 10.0
    c.gan.eval_examples = 512

    c.train.num_steps = 800
    c.train.log_every = 50
    c.train.eval_every = 400
    c.train.checkpoint_every = 400
    return c
