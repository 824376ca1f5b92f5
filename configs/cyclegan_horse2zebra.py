r"""CycleGAN (Zhu et al. 2017) on the paper's horse2zebra at 256 px, the paper's recipe: ResNet generators of 9
residual blocks (64 wide), 70 x 70 PatchGAN discriminators, least-squares adversarial losses, cycle weight 10,
identity weight 0.5, a history of 50 generated images, random flips, batch 1, Adam with lr 2e-4 and b1 0.5 for
100 epochs and then linearly to 0 over 100 more. Batch 1 runs on one device (one GPU, or `--cpu_devices=1`); on N
devices set `--config.batch_size=N`, one image per device, as the authors' multi-GPU runs.

  python -m ssljax.train --config configs/cyclegan_horse2zebra.py --workdir /tmp/ssljax/cyclegan_horse2zebra
  python -m ssljax.train --config configs/cyclegan_horse2zebra.py:runlocal --workdir /tmp/ssljax/cyclegan_h2z_smoke

Needs the tfds `cycle_gan/horse2zebra` files (prepare once: `pip install -e .[prepare]` and
`python -m ssljax.prepare cycle_gan/horse2zebra`); any of tfds' `cycle_gan/*` pairs works through
`--config.dataset.name` and `--config.dataset.domain_b.name`. Domain A (horses) is the splits trainA / testA,
domain B (zebras) trainB / testB. Differences from the authors' code: images are read at 256 px, without their
resize to 286 and random 256 crop. An epoch is max(|A|, |B|) = 1,334 steps at batch 1, as
the authors' unaligned dataset. Expected, a prediction from the paper's figures (this config has never run here:
no network on this machine): `cyclegan_translations.png` shows horses striped as zebras and zebras turned brown,
backgrounds kept, and small cycle errors.
"""

import ml_collections
from ml_collections import config_dict

from configs import cyclegan_digits


def get_config(arg: str = ""):
  args = arg.split(",")
  config = cyclegan_digits.get_config(",".join(a for a in args if a != "runlocal"))
  name = "cycle_gan/horse2zebra"
  config.dataset = ml_collections.ConfigDict(
    dict(
      name=name,
      train_split="trainA",
      test_split="testA",
      image_size=256,
      channels=3,
      data_dir=config_dict.placeholder(str),
      skip_bad_files=False,
      center_crop=1.0,
      host_crops=False,
      worker_processes=0,
      domain_b=dict(name=name, train_split="trainB", test_split="testB"),
    )
  )
  config.cyclegan.update(
    generator_width=64, residual_blocks=9, discriminator_width=64, discriminator_layers=3, flip=True
  )
  config.batch_size = 1
  config.eval_batch_size = 8
  config.epochs = 200
  config.optimizer.decay_start_epoch = 100
  config.log_every = 100
  config.checkpoint_every = 5000
  if "translations" in config.get("evals", {}):  # The labels are the domains: no class to keep.
    config.evals.translations.update(paired_test=False, keeps_class=False, num_images=8)
  if "runlocal" in args:
    config.dataset.image_size = 32
    config.cyclegan.update(generator_width=8, residual_blocks=1, discriminator_width=8, discriminator_layers=2)
    config.cyclegan.pool_size = 4
    config.total_steps = 12
    config.log_every = 2
    config.checkpoint_every = 4
  return config
