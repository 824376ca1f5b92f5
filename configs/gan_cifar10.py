r"""DCGAN (Radford et al. 2016) on CIFAR-10 at 32 px: generator 100 -> 4 x 4 x 256 -> 8 x 8 x 128 -> 16 x 16 x 64 ->
32 x 32 x 3, discriminator 32 -> 16 x 16 x 64 -> 8 x 8 x 128 -> 4 x 4 x 256 -> logit, the paper's optimizer (Adam,
lr 2e-4, b1 0.5, batch 128) for 25 epochs (the PyTorch DCGAN example's default `--niter`), the non-saturating
objective; `:hinge` for the hinge loss.

  python -m ssljax.train --config configs/gan_cifar10.py --workdir /tmp/ssljax/gan_cifar10
  python -m ssljax.train --config configs/gan_cifar10.py:runlocal --workdir /tmp/ssljax/gan_cifar10_smoke

Needs the tfds `cifar10` ArrayRecord files (prepare once: `pip install -e .[prepare]` and
`python -m ssljax.prepare cifar10`); any dataset works through `--config.dataset.name` at a side of 4 * 2^n px.
Expected: `gan_samples.png` shows object-like colour images (DCGAN's CIFAR-10 samples are blurry objects on
backgrounds, not recognisable classes), and the discriminator's features (every layer max-pooled to 4 x 4) beat a
random discriminator's on the linear probe. The paper's 82.8% on CIFAR-10 is for a discriminator trained on
ImageNet-1k with an L2-SVM on its features, a different protocol from ours. Not yet measured here (no network on
this machine).
"""

from configs import gan_digits, simclr_cifar10


def get_config(arg: str = ""):
  args = arg.split(",")
  config = gan_digits.get_config(",".join(a for a in args if a != "runlocal"))
  config.dataset = simclr_cifar10.get_config().dataset  # tfds cifar10, 32 px RGB.
  config.epochs = 25
  config.log_every = 50
  config.checkpoint_every = 2000
  config.eval_batch_size = 400
  if "runlocal" in args:
    config.dataset.image_size = 8
    config.gan.update(generator_width=8, discriminator_width=8, latent_dim=16)
    config.batch_size = 64
    config.total_steps = 12
    config.log_every = 2
    config.checkpoint_every = 4
  return config
