r"""Gated PixelCNN (van den Oord et al. 2016) on CIFAR-10 at 32 px, the paper's CIFAR-10 network: a 7 x 7 mask-A
first layer, then 3 x 3 gated layers, 15 in all, 384 features (masks by channel group: R, then G given R, then B
given R and G); 256-way softmax per sub-pixel, bits per dimension on the test split, samples, and the common
feature evaluators. `:conditional` conditions every gate on the class (the paper's class-conditional CIFAR-10).

  python -m ssljax.train --config configs/pixelcnn_cifar10.py --workdir /tmp/ssljax/pixelcnn_cifar10
  python -m ssljax.train --config configs/pixelcnn_cifar10.py:runlocal --workdir /tmp/ssljax/pixelcnn_cifar10_smoke

Needs the tfds `cifar10` ArrayRecord files (prepare once: `pip install -e .[prepare]` and
`python -m ssljax.prepare cifar10`). Expected: the paper reports 3.03 bits/dim for this network on the test split
after a far longer schedule than these 100 epochs (Adam 1e-3, batch 64); the `likelihood` evaluator reports ours
beside uniform (8) and an independent per-pixel model. Not yet measured here (no network on this machine; about
250x the digits config's compute per image).
"""

from configs import pixelcnn_digits, simclr_cifar10


def get_config(arg: str = ""):
  args = arg.split(",")
  config = pixelcnn_digits.get_config(",".join(a for a in args if a != "runlocal"))
  config.dataset = simclr_cifar10.get_config().dataset  # tfds cifar10, 32 px RGB.
  config.pixelcnn.update(features=384, num_layers=15)
  config.batch_size = 64
  config.eval_batch_size = 400
  config.log_every = 50
  config.checkpoint_every = 2000
  if "samples" in config.get("evals", {}):
    config.evals.samples.num_images = 16
  if "runlocal" in args:
    config.dataset.image_size = 8
    config.pixelcnn.update(features=12, num_layers=3)
    config.total_steps = 12
    config.log_every = 2
    config.checkpoint_every = 4
    if "samples" in config.get("evals", {}):
      config.evals.samples.num_scored = 20
  return config
