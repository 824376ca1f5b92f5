"""Class-balanced labelled subsets of a training set, fixed by a seed, shared by every evaluator."""

import numpy as np


def balanced_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
  """Indices of `per_class` examples of every class (all of a class if it has fewer), fixed by `seed`."""
  rng = np.random.default_rng(seed)
  picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
  return np.sort(np.concatenate(picks))


def budget_subset(labels: np.ndarray, budget, seed: int) -> tuple[np.ndarray, str]:
  """(sorted indices, name) of a label budget: "all"; an int k (k examples per class, "k_per_class"); or "Npct"
  (N% of every class, at least one example each, as SimCLR's 1%/10% ImageNet subsets)."""
  if budget == "all":
    return np.arange(len(labels)), "all"
  if isinstance(budget, int):
    return balanced_subset(labels, budget, seed), f"{budget}_per_class"
  if isinstance(budget, str) and budget.endswith("pct"):
    fraction = float(budget[:-3]) / 100
    rng = np.random.default_rng(seed)
    picks = []
    for c in np.unique(labels):
      members = np.flatnonzero(labels == c)
      picks.append(rng.permutation(members)[: max(1, round(fraction * len(members)))])
    return np.sort(np.concatenate(picks)), budget
  raise ValueError(f"unknown label budget {budget!r}: use 'all', an int per class, or e.g. '10pct'")
