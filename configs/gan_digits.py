r"""DCGAN (Radford et al. 2016) on scikit-learn's digits: a generator and a discriminator trained against each other
on the shared step (ssljax/methods/gan.py), samples in `gan_samples.png`, and the discriminator's features (every
layer max-pooled to 4 x 4, as the paper evaluated them) through the common evaluators against a fair random
discriminator and raw pixels.

  python -m ssljax.train --cpu_devices=1 --config configs/gan_digits.py --workdir /tmp/ssljax/gan_digits
  python -m ssljax.train --cpu_devices=1 --config configs/gan_digits.py:hinge --workdir /tmp/ssljax/gan_digits_hinge
  python -m ssljax.train --config configs/gan_digits.py:runlocal --workdir /tmp/ssljax/gan_smoke

On a CPU, one device: 0.14 s a step against 1.06 s on the default 8 virtual devices of 2 cores (5.5 min in all).
Expected (measured, benchmarks/RESULTS.md): samples that spread over nearly all ten digits (a raw-pixel
classifier's "classes covered" 9.4 of 10, its confidence 0.76 against 0.94 on real test digits), many of them
recognisable, on blotchy grey grounds; the discriminator's features at 10 labels per class 0.906 against 0.864 for
its fair random network and 0.853 for raw pixels (our fast linear probe).

The paper's recipe: Adam with lr 2e-4 and b1 0.5 for both players, batch 128, noise of 100 dimensions, weights
from N(0, 0.02), one discriminator update per generator update, the non-saturating objective (`:hinge`: the hinge
loss; `--config.gan.objective=least_squares`: LSGAN's). Networks at digits' 16 px: generator 100 -> 4 x 4 x 128 ->
8 x 8 x 64 -> 16 x 16, discriminator 16 -> 8 x 8 x 64 -> 4 x 4 x 128 -> logit. No augmentation. Results:
benchmarks/RESULTS.md.
"""

from configs import simclr_digits


def get_config(arg: str = ""):
  args = arg.split(",")
  config = simclr_digits.get_config(",".join(a for a in args if a != "hinge"))
  del config["simclr"]
  config.method = "gan"
  config.online_probe = False  # Two players, no probe: the feature evaluators read the discriminator after training.
  config.gan = dict(
    objective="hinge" if "hinge" in args else "non_saturating",
    latent_dim=100,
    generator_width=64,
    discriminator_width=64,
    discriminator_updates=1,
  )
  config.batch_size = 128
  config.epochs = 200
  config.optimizer = dict(
    name="adamw", base_lr=2e-4, lr_scaling="none", weight_decay=0.0, warmup_steps=0, schedule="constant", b1=0.5
  )
  config.checkpoint_every = 500
  if "train_only" not in args:
    evals = {k: v for k, v in config.evals.to_dict().items() if k in ("linear", "knn", "fewshot")}
    config.evals = dict(evals, samples=dict(type="gan_samples", every_steps=0, num_images=64, num_scored=1000, seed=0))
  if "runlocal" in args:
    config.gan.update(generator_width=8, discriminator_width=8, latent_dim=16)
    config.batch_size = 64
  return config
