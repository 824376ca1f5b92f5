"""Few-shot classification by closed-form ridge regression on frozen features (no SGD), as big_vision's fewshot
evaluator: k labelled examples per class, L2-normalised features, one-hot targets, averaged over several draws of
the k-shot subsets (fixed by seed) because one draw of 1 example per class is noisy."""

import numpy as np

from ssljax.evaluators.knn import l2_normalize
from ssljax.evaluators.label_budgets import balanced_subset


def ridge_fit(x, y, num_classes: int, l2_reg: float):
  """Minimises |x W + b - onehot(y)|^2 + l2_reg |W|^2 in closed form (bias unregularised, via centring).
  x [n, D] -> (W [D, C], b [C]); solves the n x n dual system when n < D."""
  targets = np.eye(num_classes)[y]
  x_mean, t_mean = x.mean(0), targets.mean(0)
  xc, tc = x - x_mean, targets - t_mean
  n, dim = xc.shape
  if n < dim:
    weights = xc.T @ np.linalg.solve(xc @ xc.T + l2_reg * np.eye(n), tc)
  else:
    weights = np.linalg.solve(xc.T @ xc + l2_reg * np.eye(dim), xc.T @ tc)
  return weights, t_mean - x_mean @ weights


def fewshot_accuracy(train_x, train_y, test_x, test_y, num_classes: int, shots: int, l2_reg: float, seeds) -> float:
  """Mean test accuracy over the `seeds` draws of `shots` training examples per class."""
  train_x, test_x = (l2_normalize(x).astype(np.float64) for x in (train_x, test_x))
  accuracies = []
  for seed in seeds:
    subset = balanced_subset(train_y, shots, seed)
    weights, bias = ridge_fit(train_x[subset], train_y[subset], num_classes, l2_reg)
    accuracies.append(np.mean(np.argmax(test_x @ weights + bias, -1) == test_y))
  return float(np.mean(accuracies))


def run(context, shots=(1, 5, 10, 25), l2_reg: float = 0.1, seeds=(0, 1, 2, 3, 4)) -> dict:
  """{"fewshot/<features>/<k>shot": mean test accuracy} for every feature set and shot count."""
  features, train_y, test_y = context.features()
  num_classes = context.train_source.num_classes
  return {
    f"fewshot/{name}/{k}shot": fewshot_accuracy(train_x, train_y, test_x, test_y, num_classes, k, l2_reg, seeds)
    for name, (train_x, test_x) in features.items()
    for k in shots
  }
