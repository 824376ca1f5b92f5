r"""BYOL on ImageNet (Grill et al. 2020): ResNet-50, batch 4096, LARS (lr 0.2 x B/256, weight decay 1.5e-6,
biases and BatchNorm excluded), 10 warmup epochs then cosine, 1000 epochs; projector and predictor 4096 -> 256;
target momentum 0.996 -> 1 (cosine, per step); asymmetric views (blur 1.0 / 0.1, solarisation 0 / 0.2, colour
jitter 0.4 / 0.4 / 0.2 / 0.1 with probability 0.8, grayscale 0.2) with DeepMind's colour operations (additive
brightness, HSV saturation) and zero-padded blur, bf16.

  python -m ssljax.train --config configs/byol_imagenet.py --workdir gs://BUCKET/byol_imagenet
  python -m ssljax.train --config configs/byol_imagenet.py:runlocal --workdir /tmp/ssljax/byol_imagenet_local

LARS applies the learning rate after momentum, as BYOL's optimizer. Expected: 74.3% linear top-1 after 1000
epochs (the paper's Table 1) under BYOL's linear protocol (`linear_byol/ssl/all`: Nesterov SGD on frozen
features with random crops, 80 epochs); not yet measured with this codebase.
"""

from configs import simclr_imagenet

BYOL_AUGMENT = dict(
  crop_scale=(0.08, 1.0),
  flip_prob=0.5,
  jitter_prob=0.8,
  jitter=(0.4, 0.4, 0.2, 0.1),
  grayscale_prob=0.2,
  blur_sigma=(0.1, 2.0),
)
ASYMMETRIC_VIEWS = dict(view1=dict(blur_prob=1.0, solarize_prob=0.0), view2=dict(blur_prob=0.1, solarize_prob=0.2))


def get_config(arg: str = ""):
  config = simclr_imagenet.get_config(arg)
  del config["simclr"]
  config.method = "byol"
  config.byol = dict(proj_dim=256, hidden_dim=4096, momentum=0.996, final_momentum=1.0)
  # DeepMind's augmentations.py: brightness adds a delta, saturation scales S in HSV, the blur zero-pads.
  config.augment.update(BYOL_AUGMENT, jitter_brightness="add", jitter_saturation="hsv", blur_padding="zero")
  config.views = ASYMMETRIC_VIEWS
  config.epochs = 1000
  config.optimizer = dict(
    name="lars",
    base_lr=0.2,
    lr_scaling="linear",
    weight_decay=1.5e-6,
    warmup_steps=0,
    warmup_epochs=10,  # 10 epochs of 312 steps.
    momentum=0.9,
    lr_after_momentum=True,
  )
  simclr_imagenet.set_paper_evals(config, "byol", arg)
  if "runlocal" in arg.split(","):
    config.byol.update(proj_dim=64, hidden_dim=128)
  return config
