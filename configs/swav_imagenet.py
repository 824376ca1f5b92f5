r"""SwAV on ImageNet (Caron et al. 2020, facebookresearch/swav `scripts/swav_800ep_pretrain.sh`): ResNet-50,
batch 4096, 800 epochs, multi-crop 2 x 224 px (scale 0.14 - 1) + 6 x 96 px (0.05 - 0.14), projection head
2048 -> 128, 3000 prototypes frozen for the first 313 steps (one epoch), temperature 0.1, Sinkhorn epsilon 0.05
with 3 iterations on crops 0 and 1, no queue; LARS as apex's LARC (every parameter adapted, the learning rate after
momentum, weight decay 1e-6), lr 4.8 (0.3 x B/256), 10 warmup epochs, cosine to 0.0048; colour distortion of
strength 1 and blur 0.5 on every crop.

`:bs256` is `swav_200ep_bs256_pretrain.sh`: batch 256, 200 epochs, the queue of 3840 embeddings from epoch 15,
prototypes frozen for 5005 steps, lr 0.6 without warmup, cosine to 0.0006 (expected 72.7%).

  python -m ssljax.train --config configs/swav_imagenet.py --workdir gs://BUCKET/swav_imagenet
  python -m ssljax.train --config configs/swav_imagenet.py:bs256 --workdir gs://BUCKET/swav_imagenet_bs256
  python -m ssljax.train --config configs/swav_imagenet.py:runlocal --workdir /tmp/ssljax/swav_local

Expected: 75.3% linear top-1 after 800 epochs (the paper's Table 1) under SwAV's linear protocol
(`linear_swav/ssl/all`: SGD lr 0.3, weight decay 1e-6, 100 epochs, batch 256 on frozen features with random
crops); not yet measured with this codebase. Deviations: the warmup starts at 0 (the reference's at 0.3); LARS's
trust ratio is eta |p| / |g + wd p| where LARC's is eta |p| / (|g| + wd |p|).
"""

from configs import simclr_imagenet


def get_config(arg: str = ""):
  args = arg.split(",")
  config = simclr_imagenet.get_config(arg)
  del config["simclr"]
  config.method = "swav"
  config.swav = dict(
    proj_dim=128,
    hidden_dim=2048,
    num_prototypes=3000,
    temperature=0.1,
    epsilon=0.05,
    sinkhorn_iters=3,
    crops_for_assign=(0, 1),
    freeze_prototypes_steps=313,
    queue_length=0,
    epoch_queue_starts=15,
  )
  config.model.update(conv_init="he_fan_out", zero_init_residual=False)
  config.augment.update(crop_scale=(0.14, 1.0), jitter_strength=1.0, blur_prob=0.5)
  config.multicrop = dict(num_local=6, local_size=96, crop_scale=(0.05, 0.14))
  config.batch_size = 4096
  config.epochs = 800
  config.optimizer = dict(
    name="lars",
    base_lr=0.3,
    lr_scaling="linear",
    weight_decay=1e-6,
    warmup_steps=0,
    warmup_epochs=10,
    momentum=0.9,
    lr_after_momentum=True,
    decay_norm_and_bias=True,  # LARC adapts and decays every parameter.
    end_lr_ratio=0.001,
  )
  if "bs256" in args:
    config.batch_size = 256
    config.epochs = 200
    config.swav.update(queue_length=3840, freeze_prototypes_steps=5005)
    config.optimizer.update(base_lr=0.6, warmup_epochs=0)
  simclr_imagenet.set_paper_evals(config, "swav", arg)
  if "runlocal" in args:
    config.swav.update(proj_dim=32, hidden_dim=64, num_prototypes=64, freeze_prototypes_steps=2)
    config.multicrop.update(num_local=2, local_size=32)
    config.batch_size = 32
    if "bs256" in args:
      config.swav.queue_length = 64
  return config
