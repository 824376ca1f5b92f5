r"""Auto-encoders on scikit-learn's digits (lecture 002): AE, denoising AE, VAE, beta-VAE and conditional VAE with
the embedded default's data, encoder, budget (100 epochs, batch 256) and evaluators (configs/simclr_digits.py),
plus the pictures the lectures show (`autoencoder_pictures`).

  python -m ssljax.train --config configs/autoencoder_digits.py --workdir /tmp/ssljax/ae_digits
  python -m ssljax.train --config configs/autoencoder_digits.py:denoising --workdir /tmp/ssljax/dae_digits
  python -m ssljax.train --config configs/autoencoder_digits.py:vae --workdir /tmp/ssljax/vae_digits
  python -m ssljax.train --config configs/autoencoder_digits.py:beta_vae --workdir /tmp/ssljax/beta_vae_digits
  python -m ssljax.train --config configs/autoencoder_digits.py:cvae --workdir /tmp/ssljax/cvae_digits
  python -m ssljax.train --config configs/autoencoder_digits.py:vae,runlocal --workdir /tmp/ssljax/vae_smoke

The encoder is the ResNet every method here trains (its features are what the probes read); a linear layer maps
them to the latent (16 dimensions; a VAE's mean and log-variance), a Dense layer and two stride-2 transposed
convolutions decode it to pixel probabilities. Bernoulli pixels and Adam at 1e-3, as pytorch/examples' VAE; no
augmentation (the images are what is reconstructed). Denoising: masking noise zeroing 30% of the pixels (Vincent
et al. 2008). beta-VAE: beta 2. Higgins et al. (2017) use 4 on 64 x 64 dSprites; these 16 x 16 digits have a
sixteenth of the pixels, so a sixteenth of the reconstruction term against the KL, and at this budget beta 4
collapsed the posterior (KL 0.96 nats per image, reconstructions no better than the mean image) where beta 2
keeps 3.6 nats with smooth traversals (benchmarks/RESULTS.md, 2026-12-06).
Recognisable samples from the prior need fewer latents and longer training than the methods table's budget:

  python -m ssljax.train --config configs/autoencoder_digits.py:vae --config.autoencoder.latent_dim=4 \
    --config.epochs=535 --workdir /tmp/ssljax/vae_samples

(3,003 steps, 33 min on 2 cores): most of `samples.png` are clear digits, a raw-pixel classifier's confidence on
1,000 prior samples 0.826 over 9.6 classes (real test digits 0.943; 4 latents at 100 epochs 0.759).
Results: benchmarks/RESULTS.md, "Pretext tasks and auto-encoders on digits".
"""

from configs import simclr_digits


def get_config(arg: str = ""):
  args = arg.split(",")
  variational = bool({"vae", "beta_vae", "cvae"} & set(args))
  settings = dict(
    latent_dim=16,
    variational=variational,
    beta=2.0 if "beta_vae" in args else 1.0,
    conditional="cvae" in args,
    noise="masking" if "denoising" in args else "none",
    noise_level=0.3 if "denoising" in args else 0.0,
    decoder_width=64,
  )
  config = simclr_digits.get_config(arg)
  del config["simclr"]
  config.method = "autoencoder"
  config.autoencoder = settings
  # The whole image, unchanged.
  config.augment.update(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), jitter_prob=0.0, blur_prob=0.0)
  config.optimizer = dict(
    name="adamw", base_lr=1e-3, lr_scaling="none", weight_decay=0.0, warmup_steps=0, b1=0.9, b2=0.999
  )
  if "train_only" not in args:
    pictures = dict(type="autoencoder_pictures", every_steps=0, num_images=16, steps=8, traversal_dims=8, seed=0)
    small = "runlocal" in args
    config.evals.pictures = dict(pictures, max_points=100 if small else 2000, num_scored=100 if small else 1000)
  return config
