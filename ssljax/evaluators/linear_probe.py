"""Linear probe on frozen features, in JAX/optax so that it scales to ImageNet-sized feature banks.

Features are standardised with training-set statistics: MAE's BatchNorm-before-the-head trick (a BatchNorm
without affine parameters, evaluated with population statistics), which matters for features of very different
scales such as MAE's class token, and is harmless for the others. A softmax classifier is trained with Adam on
minibatches (full batch when the set is small) for every weight decay of a grid at once (vmapped); the weight
decay with the best accuracy on a class-balanced validation part of the training labels is refit on all of them.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssljax.evaluators.label_budgets import balanced_subset, budget_subset


@functools.partial(jax.jit, static_argnames=("num_classes", "steps", "batch_size"))
def fit_softmax_classifiers(
  features, labels, weight_decays, *, num_classes: int, steps: int, batch_size: int, lr=1e-2, seed=0
):
  """One classifier per weight decay. features [N, D] float32, labels [N] int32, weight_decays [W]
  -> (kernels [W, D, C], biases [W, C])."""
  n, dim = features.shape
  tx = optax.adam(optax.cosine_decay_schedule(lr, steps))

  def fit_one(weight_decay):
    params = (jnp.zeros((dim, num_classes)), jnp.zeros((num_classes,)))

    def loss_fn(params, x, y):
      kernel, bias = params
      ce = optax.softmax_cross_entropy_with_integer_labels(x @ kernel + bias, y).mean()
      return ce + 0.5 * weight_decay * jnp.sum(kernel**2)

    def step(i, carry):
      params, opt_state = carry
      if batch_size >= n:
        x, y = features, labels
      else:
        index = jax.random.randint(jax.random.fold_in(jax.random.key(seed), i), (batch_size,), 0, n)
        x, y = features[index], labels[index]
      updates, opt_state = tx.update(jax.grad(loss_fn)(params, x, y), opt_state)
      return optax.apply_updates(params, updates), opt_state

    params, _ = jax.lax.fori_loop(0, steps, step, (params, tx.init(params)))
    return params

  return jax.vmap(fit_one)(weight_decays)


def _accuracy(kernel, bias, features, labels) -> float:
  return float(jnp.mean(jnp.argmax(features @ kernel + bias, -1) == labels))


def linear_probe_accuracy(
  train_x,
  train_y,
  test_x,
  test_y,
  num_classes: int,
  weight_decays=(1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
  steps: int = 500,
  batch_size: int = 4096,
  val_fraction: float = 0.2,
  seed: int = 0,
) -> float:
  """Test accuracy of a linear classifier whose weight decay is chosen on held-out training labels."""
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
  per_class = max(1, int(round(val_fraction * len(train_y) / num_classes)))
  val = balanced_subset(train_y, per_class, seed)
  fit = np.setdiff1d(np.arange(len(train_y)), val)
  decays = jnp.asarray(weight_decays, jnp.float32)
  fit_kwargs = dict(num_classes=num_classes, steps=steps, batch_size=batch_size, seed=seed)
  kernels, biases = fit_softmax_classifiers(train_x[fit], train_y[fit], decays, **fit_kwargs)
  val_accuracy = [_accuracy(k, b, train_x[val], train_y[val]) for k, b in zip(kernels, biases, strict=True)]
  best = decays[int(np.argmax(val_accuracy))]
  kernels, biases = fit_softmax_classifiers(train_x, train_y, best[None], **fit_kwargs)
  return _accuracy(kernels[0], biases[0], test_x, test_y)


def evaluate(
  features: dict, train_y, test_y, num_classes: int, label_budgets=("all", 10), steps: int = 500, seed: int = 0
) -> dict:
  """Linear-probe accuracies for every feature set and label budget.

  Args:
    features: name -> (train features [N, D], test features [M, D]), e.g. "ssl", "raw_pixels", "random_init".
    label_budgets: see `label_budgets.budget_subset` ("all", k per class, "10pct").

  Returns:
    {"linear_fast/<features>/<budget>": test accuracy}.
  """
  results = {}
  for budget in label_budgets:
    subset, budget_name = budget_subset(train_y, budget, seed)
    for name, (train_x, test_x) in features.items():
      accuracy = linear_probe_accuracy(
        train_x[subset], train_y[subset], test_x, test_y, num_classes, steps=steps, seed=seed
      )
      results[f"linear_fast/{name}/{budget_name}"] = accuracy
  return results


def run(context, **settings) -> dict:
  """The evaluator entry point (`config.evals.NAME.type = "linear_probe"`)."""
  features, train_y, test_y = context.features()
  return evaluate(features, train_y, test_y, context.train_source.num_classes, **settings)
