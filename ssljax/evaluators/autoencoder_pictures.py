"""What an auto-encoder learned, in the lectures' pictures and two numbers: the held-out reconstruction
cross-entropy (and KL) against predicting the training split's mean image, reconstructions, and for a VAE samples
from the prior, interpolations between test images, latent traversals (beta-VAE) and class-conditional samples
(CVAE); a t-SNE of the test latents coloured by class. PNGs in the workdir and TensorBoard. For a VAE with labelled
data, how recognisable `num_scored` samples from the prior are (`sample_classes`; a CVAE's classes in turn)."""

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import data, losses, paths
from ssljax.config import ConfigError
from ssljax.evaluators.embedding_plot import embed_2d, scatter_png
from ssljax.evaluators.reconstruction import tile
from ssljax.evaluators.sample_classes import sample_classes


def training_mean_image(context):
  """[H, W, C]: the mean of the training split's images, summed one evaluation batch at a time."""
  total = sum(
    np.asarray(batch["image"][:valid], np.float64).sum(0)
    for batch, valid in data.eval_batches(context.train_source, context.config.eval_batch_size, context.batch_sharding)
  )
  return (total / len(context.train_source)).astype(np.float32)


def run(
  context,
  num_images: int = 16,
  steps: int = 8,
  traversal_dims: int = 8,
  max_points: int = 2000,
  num_scored: int = 1000,
  seed: int = 0,
):
  """{"autoencoder/ssl/test_bce", "autoencoder/mean_image/test_bce" (nats per image, decoding the posterior mean),
  "autoencoder/ssl/test_kl" (VAE), "autoencoder/latent_tsne/silhouette", "autoencoder_samples/..." (VAE)}; writes
  reconstructions.png, latents_tsne.png and, for a VAE, samples.png, interpolations.png, traversals.png (latents
  sorted by their mean KL, the most used first, each from -3 to 3 around a test image's mean) and class_samples.png
  (CVAE: one row per class, one prior draw per column)."""
  config = context.config
  if config.method != "autoencoder":
    raise ConfigError(f"config.evals: autoencoder_pictures needs method 'autoencoder', not {config.method!r}")
  settings = config.autoencoder
  model, variables = context.model, context.variables
  posterior = jax.jit(lambda v, x, y: model.apply(v, x, y, method="posterior")[1:])
  decode = jax.jit(lambda v, z, y: model.apply(v, z, y, method="decode"))

  mean_image = training_mean_image(context)
  sums = {"ssl": 0.0, "mean_image": 0.0, "kl": 0.0}
  means, logvars, labels, images = [], [], [], []
  for batch, valid in data.eval_batches(context.test_source, config.eval_batch_size, context.batch_sharding):
    mean, logvar = posterior(variables, batch["image"], batch["label"])
    x = batch["image"][:valid]
    sums["ssl"] += float(jnp.sum(losses.bernoulli_nll(decode(variables, mean, batch["label"])[:valid], x)))
    baseline = jnp.broadcast_to(jnp.clip(mean_image, 1e-6, 1 - 1e-6), x.shape)
    sums["mean_image"] += float(jnp.sum(losses.bernoulli_nll(baseline, x)))
    if logvar is not None:
      sums["kl"] += float(jnp.sum(losses.gaussian_kl(mean[:valid], logvar[:valid])))
      logvars.append(np.asarray(logvar[:valid]))
    means.append(np.asarray(mean[:valid]))
    labels.append(np.asarray(batch["label"][:valid]))
    if not images:
      images.append(np.asarray(batch["image"][:num_images]))
  count = len(context.test_source)
  results = {f"autoencoder/{name}/test_bce": sums[name] / count for name in ("ssl", "mean_image")}
  means, labels, first = np.concatenate(means), np.concatenate(labels), images[0]

  first_labels = labels[: len(first)]
  pictures = {"reconstructions": tile(np.concatenate([first, decode(variables, means[: len(first)], first_labels)], 2))}
  if settings.variational:
    results["autoencoder/ssl/test_kl"] = sums["kl"] / count
    key = jax.random.key(seed)
    prior = jax.random.normal(key, (4 * steps, settings.latent_dim))
    pictures["samples"] = tile(decode(variables, prior, first_labels[0].repeat(4 * steps)), steps)
    pairs = [(i, next(j for j in range(len(labels)) if labels[j] != labels[i])) for i in range(4)]
    t = np.linspace(0.0, 1.0, steps)[:, None]
    path = np.concatenate([(1 - t) * means[a] + t * means[b] for a, b in pairs])
    pictures["interpolations"] = tile(decode(variables, path, np.repeat([labels[a] for a, _ in pairs], steps)), steps)
    kl_per_dim = np.mean(-0.5 * (1 + np.concatenate(logvars) - means**2 - np.exp(np.concatenate(logvars))), axis=0)
    dims = np.argsort(-kl_per_dim)[:traversal_dims]
    values = np.linspace(-3.0, 3.0, steps)
    grid = np.repeat(means[:1], len(dims) * steps, axis=0)
    grid[np.arange(len(dims) * steps), np.repeat(dims, steps)] = np.tile(values, len(dims))
    pictures["traversals"] = tile(decode(variables, grid, np.repeat(labels[:1], len(grid))), steps)
    if settings.conditional:
      classes = np.repeat(np.arange(context.train_source.num_classes), steps)
      draws = np.tile(np.asarray(prior[:steps]), (context.train_source.num_classes, 1))
      pictures["class_samples"] = tile(decode(variables, draws, classes), steps)
    scored_prior = jax.random.normal(jax.random.fold_in(key, 1), (num_scored, settings.latent_dim))
    scored_labels = np.arange(num_scored) % max(context.train_source.num_classes, 1)
    scored = np.asarray(decode(variables, scored_prior, scored_labels), np.float32)
    results |= sample_classes(context, "autoencoder_samples", scored)

  subset = np.sort(np.random.default_rng(seed).permutation(len(labels))[:max_points])
  coords = embed_2d(means[subset], "tsne", seed)
  from sklearn.metrics import silhouette_score

  results["autoencoder/latent_tsne/silhouette"] = float(silhouette_score(coords, labels[subset]))
  pictures["latents_tsne"] = scatter_png(coords, labels[subset], "t-SNE of the test latents (posterior means)")
  zoom = max(1, 48 // config.dataset.image_size)  # Small images (digits' 16 px) enlarged, nearest neighbour.
  pictures = {name: p if name == "latents_tsne" else p.repeat(zoom, 0).repeat(zoom, 1) for name, p in pictures.items()}
  if jax.process_index() == 0:
    for name, picture in pictures.items():
      paths.write_png(paths.resolve(context.workdir) / f"{name}.png", picture)
      if context.writer is not None:
        context.writer.write_image(0, f"autoencoder/{name}", picture)
  return results
