r"""VICReg on ImageNet (Bardes, Ponce & LeCun 2022, facebookresearch/vicreg): ResNet-50 (zero_init_residual),
batch 2048, 1000 epochs, expander 8192-8192-8192, coefficients 25 / 25 / 1; LARS (momentum 0.9, trust coefficient
0.001, the learning rate after momentum, weight decay 1e-6, biases and BatchNorm excluded from both) at lr
0.2 x B/256, 10 warmup epochs, then cosine to 0.001 x the peak; BYOL's asymmetric views.

  python -m ssljax.train --config configs/vicreg_imagenet.py --workdir gs://BUCKET/vicreg_imagenet
  python -m ssljax.train --config configs/vicreg_imagenet.py:runlocal --workdir /tmp/ssljax/vicreg_local

Expected: 73.2% linear top-1 after 1000 epochs (the paper's Table 1) under VICReg's linear protocol
(`linear_vicreg/ssl/all`: SGD lr 0.3, weight decay 1e-6, 100 epochs, batch 256 on frozen features with random
crops); not yet measured with this codebase.
"""

from configs import barlow_twins_imagenet, simclr_imagenet


def get_config(arg: str = ""):
  config = simclr_imagenet.get_config(arg)
  del config["simclr"]
  config.method = "vicreg"
  config.vicreg = dict(proj_dim=8192, proj_layers=3, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0)
  barlow_twins_imagenet.set_twin_recipe(config)
  config.optimizer = dict(barlow_twins_imagenet.PAPER_LARS, base_lr=0.2, weight_decay=1e-6)
  simclr_imagenet.set_paper_evals(config, "vicreg", arg)
  if "runlocal" in arg.split(","):
    config.vicreg.proj_dim = 64
  return config
