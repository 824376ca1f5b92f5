r"""SimSiam on ImageNet (Chen & He 2021): ResNet-50, batch 512, SGD (lr 0.05 x B/256, momentum 0.9, weight decay
1e-4), cosine schedule without warmup, 100 epochs; 3-layer projector 2048 ending in BatchNorm(affine=False),
predictor 2048 -> 512 -> 2048 at a constant learning rate; MoCo v2 augmentations (jitter 0.4 / 0.4 / 0.4 / 0.1,
blur 0.5).

  python -m ssljax.train --config configs/simsiam_imagenet.py --workdir gs://BUCKET/simsiam_imagenet
  python -m ssljax.train --config configs/simsiam_imagenet.py:runlocal --workdir /tmp/ssljax/simsiam_local

Initialised as torchvision's ResNet-50 with zero_init_residual (the reference's); every parameter decays, as the
reference's SGD. Expected: 68.1% linear top-1 after 100 epochs (the paper's Table 4) under SimSiam's linear
protocol (`linear_simsiam/ssl/all`: LARS, batch 4096, 90 epochs on frozen features); not yet measured with this
codebase.
"""

from configs import moco_v2_imagenet, simclr_imagenet


def get_config(arg: str = ""):
  config = moco_v2_imagenet.get_config(arg)  # MoCo v2's augmentations and SGD; SimSiam's batch, lr and heads.
  del config["moco_v2"]
  config.method = "simsiam"
  config.simsiam = dict(proj_dim=2048, proj_layers=3, pred_hidden_dim=512, fix_predictor_lr=True)
  config.batch_size = 512
  config.epochs = 100
  config.optimizer.base_lr = 0.05
  config.model.zero_init_residual = True
  simclr_imagenet.set_paper_evals(config, "simsiam", arg)
  if "runlocal" in arg.split(","):
    config.simsiam.update(proj_dim=64, pred_hidden_dim=16)
    config.batch_size = 32
  return config
