"""A large Sora model for multi-host training: about 1.9B parameters (text encoder and decoder
24 layers each, width 1536, 16 heads, MLP 6144; fusion 6 layers; a ResNet-50 image encoder at
224 pixels), bfloat16, FSDP across hosts, layers scanned and rematerialised.

    # on every host of the cluster (jax.distributed detects SLURM / TPU / Kubernetes):
    python -m sora_jax.main --config=configs/sora_large.py --workdir=/shared/runs/sora_large

Sized for 4+ hosts of 8 accelerators: mesh (data=-1, fsdp=8, tensor=1) keeps parameters and
optimizer state sharded within a host and replicates across hosts.
"""

from configs import sora_base


def get_config(arg=None):
    c = sora_base.get_config()
    for part in (c.model.text_encoder, c.model.decoder):
        part.num_layers, part.d_model, part.num_heads, part.mlp_dim = 24, 1536, 16, 6144
        part.remat_policy = "full"
    f = c.model.fusion
    f.num_layers, f.d_model, f.num_heads, f.mlp_dim, f.remat_policy = 6, 1536, 16, 6144, "full"
    c.model.image_encoder.d_model = 1536
    c.model.text_encoder.vocab_size = c.model.decoder.vocab_size = 32_768
    c.data.vocab_size = 32_768
    c.data.batch_size = 1024
    c.mesh.shape = (-1, 8, 1)
    c.train.microbatches = 4
    c.optim.learning_rate = 2e-4
    return c
