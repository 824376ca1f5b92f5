r"""MAE on CIFAR-10: ViT-Ti/4 (64 patches of 4x4 px), 75% masked, decoder 4 blocks x 256, per-patch normalised
pixel loss, AdamW (lr 1.5e-4 x B/256, betas 0.9/0.95, weight decay 0.05), batch 512, 800 epochs with 40 warmup
epochs: the paper's ImageNet recipe at CIFAR scale (the paper itself has no CIFAR setting).

  python -m ssljax.train --config configs/mae_cifar10.py --workdir /tmp/ssljax/mae_cifar10
  python -m ssljax.train --config configs/mae_cifar10.py:runlocal --workdir /tmp/ssljax/mae_cifar10_local

Needs the tfds `cifar10` ArrayRecord files (see configs/simclr_cifar10.py). Expected: fine-tuning accuracy well
above training the same ViT from scratch (~0.80 without heavy augmentation) and MAE's linear probing on the class
token (`linear_mae`) around 0.6-0.7 (MAE features are weak linearly, as in the paper's Table 1 vs. fine-tuning);
a guess at CIFAR scale, not a paper's figure. Not yet measured with this codebase.
"""

from ml_collections import config_dict

from configs import mae_digits
from ssljax.evaluators import linear_eval


def get_config(arg: str = ""):
  config = mae_digits.get_config()
  config.dataset = dict(
    name="cifar10",
    train_split="train",
    test_split="test",
    image_size=32,
    channels=3,
    data_dir=config_dict.placeholder(str),
    skip_bad_files=False,
    center_crop=1.0,
    host_crops=False,
    worker_processes=0,
  )
  config.model = dict(name="vit", variant="Ti", width=None, depth=None, num_heads=None, patch_size=4, pool="cls")
  config.mae = dict(mask_ratio=0.75, norm_pix=True, decoder_width=256, decoder_depth=4, decoder_heads=8)
  config.augment.update(crop_scale=(0.2, 1.0), flip_prob=0.5)
  config.batch_size = 512
  config.epochs = 800
  config.optimizer.update(base_lr=1.5e-4, warmup_steps=0, warmup_epochs=40)
  config.log_every = 50
  config.checkpoint_every = 2000
  config.eval_batch_size = 1000
  config.eval_baselines = ("random_init",)
  config.evals.linear.update(label_budgets=("all", 10), steps=2000)
  config.evals.finetune.update(
    batch_size=512,
    epochs=100,
    augment=dict(crop_scale=(0.08, 1.0)),  # Overrides of config.augment.
  )
  config.evals.finetune.optimizer.update(base_lr=5e-4, layer_decay=0.65)
  config.evals.reconstruction.num_images = 16
  config.evals.linear_mae.update(batch_size=512, augment=linear_eval.crop_and_flip())
  if "runlocal" in arg.split(","):
    config.model.update(width=64, depth=2, num_heads=2)
    config.mae.update(decoder_width=32, decoder_depth=1, decoder_heads=2)
    config.batch_size = 64
    config.total_steps = 10
    config.log_every = 5
    config.evals.linear.steps = 50
    config.evals.finetune.update(batch_size=64, epochs=1)
    config.evals.linear_mae.update(batch_size=64, epochs=1, warmup_epochs=0, baselines=())
  return config
