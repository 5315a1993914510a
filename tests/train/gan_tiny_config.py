"""A seconds-long GAN run for the command-line tests: shapes captioning, text-to-image and
inpainting in one mixture, with the tiny model and a tiny inpainting generator (which serves t2i).

    python -m sora_jax.main --config=tests/train/gan_tiny_config.py --workdir=/tmp/gan_tiny
"""

from configs import base


def get_config(arg=None):
    c = base.get_config()
    c.data.name = "mixture"
    c.data.mixture = base.mixture(caption=("shapes", "caption", 1), t2i=("shapes", "t2i", 1),
                                  inpaint=("shapes", "inpaint", 1))
    c.data.image_size, c.data.text_len, c.data.decoder_len = 16, 16, 16
    c.data.batch_size, c.data.eval_batch_size = 8, 16
    c.data.shapes.num_validation = 32
    c.model.text_encoder.max_len = c.model.decoder.max_len = 64
    g = c.model.gan
    g.enabled, g.inpaint, g.image_size = True, True, 16
    g.z_dim, g.w_dim, g.base_channels, g.max_channels = 8, 16, 8, 16
    c.gan.rows = 6
    small_gan_evaluation(c, judge_examples=256, judge_steps=20)
    c.gan.judge_width = 4
    c.gan.sample_prompts = ("a large red circle", "a small blue square")
    c.gan.sample_scale = 1
    c.optim.schedule, c.optim.warmup_steps = "constant", 0  # the same updates whatever num_steps says
    c.train.num_steps = 6
    c.train.log_every = 2
    c.train.checkpoint_every = 3
    return c


def small_gan_evaluation(c, *, judge_examples, judge_steps):
    """Seconds-long GAN evaluation for test runs: a small judge, 32 generated rows, small grids,
    one eval batch, no progress bar."""
    c.gan.eval_examples = 32
    c.gan.judge_examples, c.gan.judge_steps = judge_examples, judge_steps
    c.gan.samples_per_prompt = 3
    c.gan.inpaint_panels = 2
    c.train.eval_batches = 1
    c.train.progress = False
