r"""Barlow Twins on ImageNet (Zbontar et al. 2021, facebookresearch/barlowtwins): ResNet-50 (torchvision's init,
zero_init_residual), batch 2048, 1000 epochs, projector 8192-8192-8192, lambda 0.0051; LARS (momentum 0.9, trust
coefficient 0.001, the learning rate after momentum, weight decay 1.5e-6) with lr 0.2 x B/256 for the weights and
0.0048 x B/256 for biases and BatchNorm parameters (which take neither weight decay nor the trust ratio), 10
warmup epochs, then cosine to 0.001 x the peak; BYOL's asymmetric views with torchvision's colour operations.

  python -m ssljax.train --config configs/barlow_twins_imagenet.py --workdir gs://BUCKET/barlow_twins_imagenet
  python -m ssljax.train --config configs/barlow_twins_imagenet.py:runlocal --workdir /tmp/ssljax/bt_local

Expected: 73.2% linear top-1 after 1000 epochs (the paper's Table 1) under Barlow Twins' linear protocol
(`linear_barlow_twins/ssl/all`: SGD lr 0.3, weight decay 1e-6, 100 epochs, batch 256 on frozen features with
random crops); not yet measured with this codebase. Deviation: the loss's standardisation has no running averages
(the reference's BatchNorm1d keeps them but never reads them in training).
"""

from configs import byol_imagenet, simclr_imagenet

PAPER_LARS = dict(  # barlowtwins main.py's LARS and schedule (VICReg's too, with its own rates).
  name="lars",
  lr_scaling="linear",
  warmup_steps=0,
  warmup_epochs=10,
  momentum=0.9,
  lr_after_momentum=True,
  end_lr_ratio=0.001,
)


def get_config(arg: str = ""):
  config = simclr_imagenet.get_config(arg)
  del config["simclr"]
  config.method = "barlow_twins"
  config.barlow_twins = dict(proj_dim=8192, proj_layers=3, lambda_=0.0051)
  set_twin_recipe(config)
  config.optimizer = dict(PAPER_LARS, base_lr=0.2, norm_and_bias_base_lr=0.0048, weight_decay=1.5e-6)
  simclr_imagenet.set_paper_evals(config, "barlow_twins", arg)
  if "runlocal" in arg.split(","):
    config.barlow_twins.proj_dim = 64
  return config


def set_twin_recipe(config):
  """What Barlow Twins and VICReg share on ImageNet: torchvision's ResNet-50 with zero_init_residual, batch 2048,
  1000 epochs, BYOL's asymmetric views with torchvision's colour operations."""
  config.model.update(conv_init="he_fan_out", zero_init_residual=True)
  config.augment.update(byol_imagenet.BYOL_AUGMENT)
  config.views = byol_imagenet.ASYMMETRIC_VIEWS
  config.batch_size = 2048
  config.epochs = 1000
