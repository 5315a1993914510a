"""Inpainting on the shapes world: 16x16 scenes of one to three objects with random box and
brush-stroke holes; the generator sees the masked image, the mask and the caption (U-Net encoder
skips into its upsampling stack) and keeps the known pixels exactly.

    python -m sora_jax.main --config=configs/shapes_inpaint.py --workdir=runs/shapes_inpaint
    python -m sora_jax.generate --workdir=runs/shapes_inpaint --task=inpaint --image=IN.png \\
        --mask=MASK.png --prompt="a large red circle above a small blue square" --out=completed.png

Measured on 2 CPU cores: 13 minutes for the 800 steps and two evals; on 512 validation holes
the EMA generator's L1 is 0.093 against 0.303 for a mean-colour fill (gan/hole_l1_ratio 0.306,
target <= 1/3; 0.415 at step 400), hole PSNR 17.2 dB; original | masked | completed panels
under DIR/samples/.
"""

from configs import base


def get_config(arg=None):
    c = base.get_config()
    c.data.name = "shapes"
    c.data.task = "inpaint"
    c.data.image_size = 16
    c.data.text_len = 48
    c.data.decoder_len = 0
    c.data.batch_size = 64
    c.data.eval_batch_size = 128
    c.data.shapes.num_validation = 512
    c.data.mask_kind = "mixed"

    m = c.model
    m.text_encoder.d_model, m.text_encoder.num_heads, m.text_encoder.mlp_dim = 64, 4, 128
    m.text_encoder.num_layers = 2
    m.text_encoder.max_len = 64
    m.image_encoder.image_size, m.image_encoder.d_model = 16, 64
    m.image_encoder.stage_features = (16, 32)
    m.fusion.d_model, m.fusion.num_heads, m.fusion.mlp_dim, m.fusion.num_layers = 64, 4, 128, 1
    g = m.gan
    g.enabled = True
    g.inpaint = True
    g.image_size, g.channels = 16, 3
    g.z_dim, g.w_dim, g.base_channels, g.max_channels = 32, 128, 32, 128
    g.text_conditioning = "joint"

    c.gan.g_learning_rate = 1e-3
    c.gan.d_learning_rate = 1e-3
    c.gan.l1_weight = 10.0
    c.gan.ema_decay = 0.99
    c.gan.eval_examples = 512

    c.train.num_steps = 800
    c.train.log_every = 50
    c.train.eval_every = 400
    c.train.checkpoint_every = 400
    c.optim.learning_rate = 1e-3
    return c
