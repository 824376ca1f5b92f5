r"""SimCLR on CIFAR-10 with a small-stem ResNet-18, the settings of the SimCLR paper's CIFAR appendix (B.9):
batch 512, LARS, lr 1.0 x B/256 (the appendix's best at this batch), weight decay 1e-6, temperature 0.5,
colour-jitter strength 0.5, no blur, 1000 epochs; 2-layer projection head (v1).

  python -m ssljax.train --config configs/simclr_cifar10.py --workdir /tmp/ssljax/simclr_cifar10
  python -m ssljax.train --config configs/simclr_cifar10.py:runlocal --workdir /tmp/ssljax/simclr_cifar10_local

Needs the tfds `cifar10` ArrayRecord files (prepare once: `pip install -e .[prepare]` and
`tfds build cifar10 --file_format=array_record`). Expected: about 0.94 linear-probe accuracy after 1000
epochs (appendix B.9, ResNet-50: 0.942; ResNet-18 is typically ~0.91). Not yet measured with this codebase.
"""

from ml_collections import config_dict

from configs import simclr_digits


def get_config(arg: str = ""):
  config = simclr_digits.get_config()
  config.dataset = dict(
    name="cifar10", train_split="train", test_split="test", image_size=32, channels=3, data_dir=None
  )
  config.model = dict(name="resnet", depth=18, width=1.0, small_stem=True)
  config.simclr = dict(
    temperature=0.5, proj_dim=128, proj_layers=2, proj_hidden_dim=None, block_size=config_dict.placeholder(int)
  )
  config.augment.update(crop_scale=(0.08, 1.0), flip_prob=0.5, grayscale_prob=0.2, blur_prob=0.0, blur_sigma=(0.1, 2.0))
  config.batch_size = 512
  config.epochs = 1000
  config.optimizer = dict(
    name="lars", base_lr=1.0, lr_scaling="linear", weight_decay=1e-6, warmup_steps=970, momentum=0.9
  )
  config.log_every = 50
  config.checkpoint_every = 2000
  config.eval_batch_size = 1000
  config.eval_baselines = ("random_init",)
  config.evals = dict(linear=dict(type="linear_probe", label_budgets=("all", 10), steps=2000))
  if "runlocal" in arg.split(","):
    config.model.width = 0.25
    config.batch_size = 64
    config.total_steps = 20
    config.log_every = 5
    config.evals.linear.steps = 100
  return config
