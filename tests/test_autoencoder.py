"""Auto-encoders: `vae_loss` against pytorch/examples' VAE loss (float64 reference with torch's BCE clamp, values
and gradients), the noise of the denoising AE, the reparameterisation, the conditioning, and the pictures
evaluator end to end. The shared step runs the CVAE in tests/test_methods.py (8 devices == 1, NaN, resume)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import autoencoder_digits
from ssljax import experiment, losses
from ssljax.config import ConfigError
from ssljax.methods import BuildInfo, autoencoder, build_method


def _torch_examples_loss(recon, x, mu, logvar, beta):
  """pytorch/examples vae/main.py `loss_function` (F.binary_cross_entropy(..., reduction="sum") + KLD, torch's
  logs clamped at -100) divided by the batch size, in float64, with its gradients written out by hand."""
  n = len(x)
  log_r, log_1mr = np.maximum(np.log(recon), -100), np.maximum(np.log1p(-recon), -100)
  bce = -np.sum(x * log_r + (1 - x) * log_1mr)
  kld = -0.5 * np.sum(1 + logvar - mu**2 - np.exp(logvar))
  grads = (
    -(x / recon - (1 - x) / (1 - recon)) / n,  # d/d recon (no clamp is active at these values).
    beta * mu / n,
    beta * 0.5 * (np.exp(logvar) - 1) / n,
  )
  return (bce + beta * kld) / n, grads


@pytest.mark.parametrize("beta", (1.0, 4.0))
def test_vae_loss_equals_pytorch_examples_loss_over_the_batch_size(beta):
  rng = np.random.default_rng(0)
  recon = rng.uniform(0.02, 0.98, (5, 4, 4, 1))
  x = rng.uniform(0, 1, (5, 4, 4, 1))
  x[0] = np.round(x[0])  # Binary and grey targets alike.
  mu, logvar = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
  expected, expected_grads = _torch_examples_loss(recon, x, mu, logvar, beta)
  args = [jnp.asarray(a, jnp.float32) for a in (recon, x, mu, logvar)]
  loss_fn = jax.jit(lambda r, m, lv: losses.vae_loss(r, args[1], m, lv, beta))
  value, grads = jax.value_and_grad(loss_fn, argnums=(0, 1, 2))(args[0], args[2], args[3])
  np.testing.assert_allclose(value, expected, rtol=1e-5)
  for grad, want in zip(grads, expected_grads, strict=True):
    np.testing.assert_allclose(grad, want, rtol=1e-5, atol=1e-7)


def test_bce_clamps_its_logs_at_minus_100_as_torch():
  recon = jnp.array([[0.0, 1.0, 0.5]])
  x = jnp.array([[1.0, 0.0, 1.0]])
  np.testing.assert_allclose(losses.bernoulli_nll(recon, x), [200.0 + np.log(2.0)], rtol=1e-6)


def test_denoising_noise_masks_or_perturbs_the_input_and_keeps_the_clean_target():
  images = jax.random.uniform(jax.random.key(0), (64, 16, 16, 3))
  masked = autoencoder.corrupt(images, jax.random.key(1), "masking", 0.3)
  zeroed = np.asarray(jnp.all(masked == 0, axis=-1))
  assert abs(zeroed.mean() - 0.3) < 0.01  # Whole pixels (every channel) zeroed, at the rate asked.
  np.testing.assert_array_equal(np.asarray(masked)[~zeroed], np.asarray(images)[~zeroed])
  noisy = autoencoder.corrupt(images, jax.random.key(1), "gaussian", 0.2)
  assert float(noisy.min()) >= 0 and float(noisy.max()) <= 1
  assert 0.1 < float(jnp.std(noisy - images)) < 0.2  # Clipping shrinks the 0.2 std a little.
  batch = {"image": images, "label": jnp.zeros(64, jnp.int32)}
  config = autoencoder_digits.get_config("denoising")
  method = build_method(config, BuildInfo(num_classes=10))
  inputs = method.make_inputs(batch, jax.random.key(2))
  np.testing.assert_allclose(inputs["target"], images, atol=1e-5)  # The whole image, unchanged.
  assert float(jnp.mean(jnp.all(inputs["image"] == 0, -1))) > 0.25


def _cvae():
  config = autoencoder_digits.get_config("cvae,runlocal")
  method = build_method(config, BuildInfo(num_classes=10))
  images = jax.random.uniform(jax.random.key(0), (8, 8, 8, 1))
  inputs = method.make_inputs({"image": images, "label": jnp.arange(8) % 10}, jax.random.key(1))
  variables = method.model.init({"params": jax.random.key(2), "dropout": jax.random.key(3)}, inputs, train=False)
  return method.model, variables, inputs


def test_reparameterisation_samples_around_the_mean_and_passes_gradients_to_mean_and_variance():
  model, variables, inputs = _cvae()

  def reconstruction(variables, key):
    return model.apply(variables, inputs, train=False, rngs={"dropout": key})["reconstruction"]

  draws = [reconstruction(variables, jax.random.key(k)) for k in range(2)]
  assert not np.allclose(draws[0], draws[1])  # z is sampled ...
  _, mean, logvar = model.apply(variables, inputs["image"], inputs["label"], method="posterior")
  at_mean = model.apply(variables, mean, inputs["label"], method="decode")
  very_sure = jax.tree.map(lambda x: x, variables)  # A copy whose latent layer we edit.
  bias = very_sure["params"]["to_latent"]["bias"]
  very_sure["params"]["to_latent"]["bias"] = bias.at[mean.shape[-1] :].set(-60.0)  # logvar -> -60: std ~ 1e-13.
  kernel = very_sure["params"]["to_latent"]["kernel"]
  very_sure["params"]["to_latent"]["kernel"] = kernel.at[:, mean.shape[-1] :].set(0.0)
  # ... around the mean: with a vanishing variance the sample is the mean.
  np.testing.assert_allclose(reconstruction(very_sure, jax.random.key(0)), at_mean, rtol=1e-5, atol=1e-6)

  def loss(params):
    outputs = model.apply({**variables, "params": params}, inputs, train=False, rngs={"dropout": jax.random.key(0)})
    return jnp.sum(outputs["reconstruction"])

  grads = jax.grad(loss)(variables["params"])["to_latent"]["kernel"]
  assert float(jnp.abs(grads[:, : mean.shape[-1]]).sum()) > 0 and float(jnp.abs(grads[:, mean.shape[-1] :]).sum()) > 0
  assert logvar.shape == mean.shape == (8, 16)


def test_the_conditional_decoder_reads_the_class():
  model, variables, inputs = _cvae()
  z = jnp.zeros((2, 16))
  pictures = model.apply(variables, z, jnp.array([3, 7]), method="decode")
  assert not np.allclose(pictures[0], pictures[1])


@pytest.mark.parametrize(
  ("override", "message"),
  [
    ({"noise": "salt"}, "config.autoencoder.noise: unknown 'salt' (none, gaussian, masking)"),
    ({"noise": "masking", "noise_level": 1.0}, "config.autoencoder.noise_level: 1.0 is out of range for masking"),
    ({"beta": 4.0}, "config.autoencoder.beta: 4.0 needs variational=True"),
    ({"latent_dim": 0}, "config.autoencoder: latent_dim must be >= 1"),
  ],
)
def test_bad_settings_are_one_line_errors_naming_the_key(override, message):
  config = autoencoder_digits.get_config("runlocal")
  config.autoencoder.update(override)
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
    build_method(config, BuildInfo(num_classes=10))


# 50 s from a cold compilation cache: under -m slow, for CI's 30 minutes (the pictures' pieces are tested above).
@pytest.mark.slow
def test_cvae_run_writes_the_lectures_pictures_and_reconstructs_better_than_the_mean_image(tmp_path):
  config = autoencoder_digits.get_config("cvae,runlocal")
  config.total_steps = 100
  config.optimizer.base_lr = 1e-2  # Adam at 1e-3 needs hundreds of steps to move the decoder's output biases.
  config.evals = {"pictures": dict(config.evals.pictures)}
  config.eval_baselines = ()
  results = experiment.train_and_evaluate(config, str(tmp_path))
  for name in ("reconstructions", "samples", "interpolations", "traversals", "class_samples", "latents_tsne"):
    assert (tmp_path / f"{name}.png").stat().st_size > 100, name
  assert results["autoencoder/ssl/test_bce"] < results["autoencoder/mean_image/test_bce"], results
  assert results["autoencoder/ssl/test_kl"] > 0
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert all(row["kl"] >= 0 for row in rows if "kl" in row)
