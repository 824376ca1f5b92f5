r"""MoCo v2 on ImageNet (Chen et al. 2020): ResNet-50, batch 256, SGD (lr 0.03 x B/256, momentum 0.9, weight decay
1e-4), cosine schedule, 200 epochs; MLP head 2048 -> 128; queue of 65,536 keys; key momentum 0.999; InfoNCE at
tau 0.2; augmentations: crop scale (0.2, 1), colour jitter 0.4 / 0.4 / 0.4 / 0.1 with probability 0.8,
grayscale 0.2, blur 0.5, flip. No shuffle-BN: BatchNorm is global under jit (see ssljax/methods/moco_v2.py).

  python -m ssljax.train --config configs/moco_v2_imagenet.py --workdir gs://BUCKET/moco_v2_imagenet
  python -m ssljax.train --config configs/moco_v2_imagenet.py:runlocal --workdir /tmp/ssljax/moco_v2_local

Initialised as torchvision's ResNet-50 (He fan-out convolutions, residual BatchNorms at one); every parameter
decays, biases and BatchNorm included (the reference hands all of them to SGD). Expected: 67.5% linear top-1
after 200 epochs (the paper's Table 1) under MoCo's linear protocol (`linear_moco_v2/ssl/all`: SGD lr 30 on
frozen features, x 0.1 at epochs 60 and 80 of 100); not yet measured with this codebase.
"""

from configs import byol_imagenet, simclr_imagenet

# BYOL's pipeline with MoCo v2's differences: crop scale (0.2, 1), saturation 0.4, blur 0.5 on every view.
MOCO_V2_AUGMENT = dict(
  byol_imagenet.BYOL_AUGMENT, crop_scale=(0.2, 1.0), jitter=(0.4, 0.4, 0.4, 0.1), blur_prob=0.5, solarize_prob=0.0
)


def get_config(arg: str = ""):
  config = simclr_imagenet.get_config(arg)
  del config["simclr"]
  config.method = "moco_v2"
  config.moco_v2 = dict(proj_dim=128, hidden_dim=2048, queue_size=65536, temperature=0.2, momentum=0.999)
  config.model.update(conv_init="he_fan_out", zero_init_residual=False)
  config.augment.update(MOCO_V2_AUGMENT)
  config.batch_size = 256
  config.epochs = 200
  config.optimizer = dict(
    name="sgd",
    base_lr=0.03,
    lr_scaling="linear",
    weight_decay=1e-4,
    warmup_steps=0,
    warmup_epochs=0,
    momentum=0.9,
    nesterov=False,
    decay_norm_and_bias=True,
  )
  simclr_imagenet.set_paper_evals(config, "moco_v2", arg)
  if "runlocal" in arg.split(","):
    config.moco_v2.update(hidden_dim=128, queue_size=256)
    config.batch_size = 32
  return config
