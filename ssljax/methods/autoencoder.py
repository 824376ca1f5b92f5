"""Auto-encoders (lecture 002's generative self-supervision): AE, denoising AE (Vincent et al. 2008: Gaussian or
masking noise on the input, the clean image as target), VAE (Kingma & Welling 2014), beta-VAE (Higgins et al.
2017: the KL term weighted by beta) and conditional VAE (Sohn et al. 2015), one method with four settings.
Pixels are Bernoulli: the loss is the summed binary cross-entropy (+ beta KL), as pytorch/examples' VAE."""

import functools

import jax
import jax.numpy as jnp

from ssljax import augment, losses, models
from ssljax.config import ConfigError
from ssljax.config_checks import NUMBER
from ssljax.methods import Method
from ssljax.models.autoencoder import AutoEncoder, ConvDecoder

SCHEMA = {
  "latent_dim": int,
  "variational": bool,
  "beta": NUMBER,  # The KL weight of a VAE (1: the ELBO; > 1: beta-VAE).
  "conditional": bool,  # Encoder and decoder see the class (a CVAE when variational).
  "noise": str,  # "none" | "gaussian" (std noise_level, clipped to [0, 1]) | "masking" (that fraction zeroed).
  "noise_level": NUMBER,
  "decoder_width": int,
}
NOISES = ("none", "gaussian", "masking")


def corrupt(images, key, noise: str, level: float):
  """The denoising auto-encoder's input: `images` [N, ...] in [0, 1] with Gaussian noise (clipped to [0, 1]) or
  with each pixel zeroed with probability `level` (masking noise, the same for every channel)."""
  if noise == "gaussian":
    return jnp.clip(images + level * jax.random.normal(key, images.shape), 0.0, 1.0)
  if noise == "masking":
    return images * (jax.random.uniform(key, (*images.shape[:-1], 1)) >= level)
  return images


def make_inputs(batch, key, view, noise: str, level: float):
  view_key, noise_key = jax.random.split(key)
  clean = augment.single_view(batch, view_key, view)
  return {"image": corrupt(clean, noise_key, noise, level), "target": clean, "label": batch["label"]}


def autoencoder_loss(outputs, batch, step, beta: float):
  """The batch mean of the summed BCE (+ beta KL for a VAE: `losses.vae_loss`)."""
  del batch, step
  bce = losses.bernoulli_nll(outputs["reconstruction"], outputs["target"])
  metrics = {"reconstruction_bce": jnp.mean(bce), "embedding_std": losses.embedding_std(outputs["mean"])}
  if "logvar" not in outputs:
    return jnp.mean(bce), metrics
  metrics["kl"] = jnp.mean(losses.gaussian_kl(outputs["mean"], outputs["logvar"]))
  loss = losses.vae_loss(outputs["reconstruction"], outputs["target"], outputs["mean"], outputs["logvar"], beta)
  return loss, metrics


def build(config, info) -> Method:
  settings = config.autoencoder
  size = config.dataset.image_size
  if settings.latent_dim < 1 or settings.decoder_width < 2:
    raise ConfigError("config.autoencoder: latent_dim must be >= 1 and decoder_width >= 2")
  if settings.noise not in NOISES:
    raise ConfigError(f"config.autoencoder.noise: unknown {settings.noise!r} ({', '.join(NOISES)})")
  if not 0 <= settings.noise_level < (1 if settings.noise == "masking" else float("inf")):
    raise ConfigError(f"config.autoencoder.noise_level: {settings.noise_level} is out of range for {settings.noise}")
  if settings.beta < 0 or (settings.beta != 1 and not settings.variational):
    raise ConfigError(f"config.autoencoder.beta: {settings.beta} needs variational=True and must be >= 0")
  if settings.conditional and info.num_classes < 1:
    raise ConfigError("config.autoencoder.conditional: the dataset has no classes")
  if size % 4:
    raise ConfigError(f"config.dataset.image_size: {size} px is not a multiple of 4 (the decoder upsamples twice)")
  dtype = jnp.dtype(config.dtype)
  view = augment.AugmentConfig(size=size, **config.augment)
  model = AutoEncoder(
    models.build_encoder(config.model, size, dtype),
    ConvDecoder(size, config.dataset.channels, settings.decoder_width),
    settings.latent_dim,
    variational=settings.variational,
    num_classes=info.num_classes if settings.conditional else 0,
  )
  return Method(
    model=model,
    make_inputs=functools.partial(make_inputs, view=view, noise=settings.noise, level=settings.noise_level),
    loss=functools.partial(autoencoder_loss, beta=settings.beta),
    views_per_image=1,
    crops=(view,),
  )
