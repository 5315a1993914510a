"""Every setting of a sora_jax experiment, with its default. Other configs start from this one.

    python -m sora_jax.main --config=configs/base.py --workdir=/tmp/base [--config.train.num_steps=100]

On its own it trains the tiny model on shapes captioning for 1,000 steps (a smoke run; the
caption loss should fall below 1.0). Real experiments override `model`, `data` and `train`.
"""

import os

import ml_collections

from sora_jax.data.config import data_config
from sora_jax.models import presets
from sora_jax.train.partitioning import DEFAULT_RULES


def default_compilation_cache_dir() -> str:
    """$XDG_CACHE_HOME/sora_jax/jax, or ~/.cache/sora_jax/jax (the XDG base directory rule: a
    relative XDG_CACHE_HOME is ignored)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return os.path.join(xdg if os.path.isabs(xdg) else "~/.cache", "sora_jax", "jax")


def mixture(**components):
    """data.mixture entries from name=(dataset, task, weight) keyword arguments."""
    return ml_collections.ConfigDict({name: {"dataset": d, "task": t, "weight": float(w)}
                                      for name, (d, t, w) in components.items()})


def small_gan(c, dataset: str, task: str, *, text_len: int = 24, inpaint: bool = False):
    """The 16-pixel image-generation experiments' shared settings: `dataset`'s `task` examples only,
    a small text encoder trained jointly by the discriminator, a 16 px generator, batch 64, and
    the learning rates they were measured with (configs/digits_gan.py, shapes_t2i.py, ...)."""
    c.data.name, c.data.task = dataset, task
    c.data.image_size, c.data.text_len, c.data.decoder_len = 16, text_len, 0
    c.data.batch_size, c.data.eval_batch_size = 64, 128
    m = c.model
    m.text_encoder.d_model, m.text_encoder.num_heads, m.text_encoder.mlp_dim = 64, 4, 128
    m.text_encoder.num_layers = 2
    m.text_encoder.max_len = max(32, text_len)
    m.image_encoder.image_size, m.image_encoder.d_model = 16, 64  # unused by the GAN, sized to the data
    m.image_encoder.stage_features = (16, 32)
    m.fusion.d_model, m.fusion.num_heads, m.fusion.mlp_dim, m.fusion.num_layers = 64, 4, 128, 1
    g = m.gan
    g.enabled, g.inpaint, g.text_conditioning = True, inpaint, "joint"
    g.image_size, g.channels = 16, 3
    g.z_dim, g.w_dim, g.base_channels, g.max_channels = 32, 128, 32, 128
    c.gan.g_learning_rate = c.gan.d_learning_rate = 1e-3
    c.gan.ema_decay = 0.99
    c.optim.learning_rate = 1e-3
    return c


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.model = presets.config_dict("tiny")  # see sora_jax/models/config.py for every key
    c.model.text_encoder.vocab_size = 384  # >= the tokenizer's vocabulary (byte: 261), padded for sharding
    c.model.decoder.vocab_size = 384

    c.data = data_config()  # see sora_jax/data/config.py
    c.data.image_size = 16
    c.data.text_len = 16
    c.data.decoder_len = 16
    c.data.batch_size = 16

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 1000
    c.train.log_every = 50
    c.train.eval_every = 500  # 0: only at the end
    c.train.eval_batches = 0  # 0: the whole validation split
    # Eval batches per caption / seq2seq / VQA component also decoded greedily and scored (exact match,
    # BLEU, ROUGE), as `python -m sora_jax.evaluate` does; 0: none, -1: every eval batch.
    c.train.eval_generate_batches = 0
    c.train.checkpoint_every = 500
    c.train.keep_checkpoints = 3  # newest N kept ...
    c.train.keep_every = 0  # ... plus every K-th step (0: none)
    c.train.async_checkpoints = True
    c.train.microbatches = 1  # gradient accumulation: the batch is split into this many parts
    c.train.z_loss = 0.0  # PaLM's z-loss weight: in the objective (metric `loss`), not in per-task losses
    c.train.task_weights = ml_collections.ConfigDict({t: 1.0 for t in
                                                      ("lm", "seq2seq", "classify", "caption", "vqa", "t2i", "inpaint")})
    c.train.nonfinite = "skip"  # non-finite loss or gradients: "skip" the update (counted) or "abort"
    c.train.debug_nan_steps = ()  # fault injection: steps (1-based) whose gradients are made NaN
    c.train.peak_tflops = 0.0  # per device, for model-FLOPs utilisation (0: not reported)
    c.train.compilation_cache_dir = default_compilation_cache_dir()  # reused by later runs ("": off)
    c.train.compilation_cache_max_mb = 4096  # least recently used entries are evicted beyond this
    c.train.progress = True  # a progress bar when stderr is a terminal, else a log line every log_every steps
    # Keep freed host memory for the next step (glibc malloc: no mmap, no trim; on CPU, programs run on
    # the calling thread): XLA:CPU's per-step buffer is otherwise mapped and page-faulted in afresh
    # every step, 15% of a large model's CPU step. The process keeps its peak host memory; see
    # sora_jax/train/host_memory.py.
    c.train.reuse_host_memory = True

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adamw"  # adamw, adam, lion, sgd, adafactor
    c.optim.learning_rate = 3e-3
    c.optim.warmup_steps = 50
    c.optim.schedule = "cosine"  # cosine, linear, constant (after warm-up)
    c.optim.end_lr_fraction = 0.1
    c.optim.weight_decay = 0.01  # not applied to biases, norm scales or gates
    c.optim.b1 = 0.9
    c.optim.b2 = 0.99
    c.optim.eps = 1e-8
    c.optim.clip_norm = 1.0  # global-norm clipping (0: off)

    # The image generator's training (its architecture: model.gan; on with model.gan.enabled).
    c.gan = ml_collections.ConfigDict()
    c.gan.g_learning_rate = 2e-4  # two time-scale: generator and discriminator each their own
    c.gan.d_learning_rate = 2e-4
    c.gan.lr_schedule = "constant"  # or "cosine": both decay to 0 over train.num_steps
    c.gan.b1 = 0.0  # Adam betas of both (StyleGAN's)
    c.gan.b2 = 0.99
    c.gan.r1_gamma = 1.0  # R1 penalty weight on real images (0: off)
    c.gan.r1_every = 4  # lazy R1: every k steps, scaled by k (or every step on 1/k of the rows: r1_schedule)
    # "lazy": the whole batch every r1_every steps (a conditional in the step); "split": every
    # r1_every-th row at every step (no conditional: XLA:CPU runs them slowly); "auto": split on CPU.
    c.gan.r1_schedule = "auto"
    c.gan.l1_weight = 10.0  # inpainting: L1 on the hole
    c.gan.augment = "translation,color"  # DiffAugment policy: translation, color, cutout ("" for none)
    c.gan.ema_decay = 0.999  # EMA of the generator weights (used for sampling and evaluation)
    c.gan.mismatch_weight = 0.5  # matching-aware D: share of the fake term given to (real image, wrong text)
    c.gan.mode_seeking = 0.0  # weight of the mode-seeking term (a second sample per prompt must differ)
    # Weight of the image-text contrastive loss in D and G (needs model.gan.contrastive_dim > 0;
    # each image must pick its own caption among the batch's, XMC-GAN style).
    c.gan.contrastive_weight = 0.0
    c.gan.rows = 0  # GAN rows taken from each batch (0: every row; a mixture sets its expected count)
    c.gan.eval_examples = 512  # validation rows generated for FID / conditional accuracy / hole metrics
    c.gan.judge_examples = 5000  # real training images the judge classifier is fitted on
    c.gan.judge_steps = 400
    c.gan.judge_width = 16
    c.gan.sample_every = 0  # sample grids every N steps (0: with each eval)
    c.gan.sample_prompts = ()  # fixed prompts of the text-to-image grid
    c.gan.samples_per_prompt = 8  # fixed noise vectors per prompt (grid columns)
    c.gan.inpaint_panels = 8  # validation rows in the inpainting grid (original | masked | completed)
    c.gan.sample_scale = 4  # pixels are enlarged this many times in the PNGs

    c.mesh = ml_collections.ConfigDict()
    c.mesh.shape = (-1, 1, 1)  # sizes of ("data", "fsdp", "tensor"); -1: the rest of the devices
    c.mesh.rules = DEFAULT_RULES  # logical axis name -> mesh axes (see sora_jax/train/partitioning.py)

    c.parallel = ml_collections.ConfigDict()
    c.parallel.backend = "jit"  # "jit" (sharded by the mesh and rules) or "pmap" (data parallel)

    c.distributed = ml_collections.ConfigDict()
    c.distributed.initialize = "auto"  # "auto": when a cluster is detected or an address is set; "yes"; "no"
    c.distributed.coordinator_address = ""  # host:port of process 0
    c.distributed.num_processes = 0
    c.distributed.process_id = -1
    c.distributed.initialization_timeout_s = 300  # waiting for every process to join
    # A process that stops answering (killed, host down) fails the others after this long.
    c.distributed.heartbeat_timeout_s = 100
    return c
