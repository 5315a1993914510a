"""Text-to-image on real handwritten digits: scikit-learn's 8x8 digits (bundled, upsampled to
16x16), each conditioned on its caption ("a handwritten seven") through the Sora text encoder,
trained jointly by the discriminator's gradient.

    python -m sora_jax.main --config=configs/digits_gan.py --workdir=runs/digits_gan
    python -m sora_jax.generate --workdir=runs/digits_gan --task=t2i --prompt="a handwritten three" \\
        --num=16 --out=threes.png

Measured on 2 CPU cores: 3 min 18 s for the 600 steps, the judge and three evals (9 minutes
before R1 was split over rows on CPU); conditional accuracy of EMA-generator samples 1.0 by the
project's judge at steps 200, 400 and 600 (target >= 0.9; gan/cond_accuracy in metrics.jsonl);
grids of the ten digits under DIR/samples/. The samples of one prompt are nearly alike (FID 318:
little variety within a class).
"""

from configs import base

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def get_config(arg=None):
    c = base.small_gan(base.get_config(), "digits", "t2i")
    c.gan.sample_prompts = tuple(f"a handwritten {d}" for d in DIGITS)
    c.gan.eval_examples = 180  # the whole validation split

    c.train.num_steps = 600
    c.train.log_every = 25
    c.train.eval_every = 200
    c.train.checkpoint_every = 200
    return c
