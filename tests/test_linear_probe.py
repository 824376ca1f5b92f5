"""The JAX linear probe against scikit-learn's LogisticRegression on the same features, and its label budgets."""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from ssljax.evaluators import label_budgets, linear_probe


def _digits():
  digits = load_digits()
  order = np.random.default_rng(0).permutation(len(digits.target))
  x, y = digits.data[order].astype(np.float32), digits.target[order].astype(np.int32)
  return x[360:], y[360:], x[:360], y[:360]


def test_accuracy_agrees_with_sklearn_logistic_regression():
  train_x, train_y, test_x, test_y = _digits()
  # sklearn minimises sum(CE) + ||W||^2 / (2C); ours mean(CE) + wd/2 ||W||^2, so wd = 1 / (C n).
  c = 0.1
  ours = linear_probe.linear_probe_accuracy(
    train_x, train_y, test_x, test_y, num_classes=10, weight_decays=(1 / (c * len(train_y)),), steps=2000
  )
  scaler = StandardScaler().fit(train_x)
  sklearn = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(train_x), train_y)
  reference = sklearn.score(scaler.transform(test_x), test_y)
  assert abs(ours - reference) <= 0.01, (ours, reference)
  # With the weight decay chosen on held-out training labels it stays close to the tuned reference.
  selected = linear_probe.linear_probe_accuracy(train_x, train_y, test_x, test_y, num_classes=10)
  assert selected >= reference - 0.03, (selected, reference)


def test_balanced_subsets_and_budget_keys():
  train_x, train_y, test_x, test_y = _digits()
  subset, name = label_budgets.budget_subset(train_y, 10, seed=0)
  assert np.bincount(train_y[subset]).tolist() == [10] * 10 and name == "10_per_class"
  np.testing.assert_array_equal(subset, label_budgets.balanced_subset(train_y, 10, seed=0))
  assert not np.array_equal(subset, label_budgets.balanced_subset(train_y, 10, seed=1))
  percent, name = label_budgets.budget_subset(train_y, "10pct", seed=0)
  counts = np.bincount(train_y)
  assert name == "10pct" and np.bincount(train_y[percent]).tolist() == np.round(0.1 * counts).astype(int).tolist()
  one_percent, _ = label_budgets.budget_subset(train_y, "1pct", seed=0)
  assert np.all(np.bincount(train_y[one_percent]) >= 1) and len(np.unique(one_percent)) == len(one_percent)
  assert len(label_budgets.budget_subset(train_y, "all", seed=0)[0]) == len(train_y)
  results = linear_probe.evaluate({"raw_pixels": (train_x, test_x)}, train_y, test_y, 10, label_budgets=("all", 10))
  assert set(results) == {"linear_fast/raw_pixels/all", "linear_fast/raw_pixels/10_per_class"}
  assert 0.75 < results["linear_fast/raw_pixels/10_per_class"] < results["linear_fast/raw_pixels/all"]
