"""The multi-process tests' run: configs/demo.py's five text tasks (shapes caption / VQA /
classify, Shakespeare LM, chat) and model, with byte tokens and without the GAN, so that each of
the launcher runs takes seconds.

    bash launch/multiprocess.sh 2 tests/distributed/text_mixture_config.py /tmp/mp --devices_per_process=2
"""

from configs import base, demo


def get_config(arg=None):
    c = demo.get_config()
    c.data.mixture = base.mixture(
        shapes_caption=("shapes", "caption", 2), shapes_vqa=("shapes", "vqa", 2),
        shapes_classify=("shapes", "classify", 1), shakespeare=("shakespeare", "lm", 1), chat=("chat", "seq2seq", 1))
    c.data.tokenizer = "byte"
    c.model.gan.enabled = False
    c.train.eval_generate_batches = 0
    # FSDP over every device, so that each process holds, and writes, its own shards of the state
    # (replicated arrays this small are written by one process: see sora_jax/train/checkpoint.py).
    c.mesh.shape = (1, -1, 1)
    # A learning rate that does not depend on train.num_steps: the runs resumed to six steps then
    # compile the same programs as the four-step runs, and reuse them from the compilation cache.
    c.optim.schedule, c.optim.warmup_steps = "constant", 0
    return c
