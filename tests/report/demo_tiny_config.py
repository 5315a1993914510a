"""configs/demo.py cut to seconds for the report tests: every task of the demo (so every section
of the report), a couple of steps, a small judge and small evaluations.

    python -m sora_jax.main --config=tests/report/demo_tiny_config.py --workdir=/tmp/demo_tiny
"""

from configs import demo
from tests.train.gan_tiny_config import small_gan_evaluation


def get_config(arg=None):
    c = demo.get_config()
    c.data.tokenizer = "byte"  # no SentencePiece training at start-up
    c.data.shapes.num_validation = 32
    c.data.eval_batch_size = 16
    c.data.batch_size = 16
    c.data.num_workers = 0
    small_gan_evaluation(c, judge_examples=64, judge_steps=4)
    c.train.num_steps = 2
    c.train.log_every = 1
    c.train.eval_every = 0
    c.train.checkpoint_every = 2
    return c
