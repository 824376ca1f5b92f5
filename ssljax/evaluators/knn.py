"""Weighted k-nearest-neighbour classifier on frozen features (the InstDisc / DINO protocol).

Features are L2-normalised; each test example takes the k training examples of highest cosine similarity, and
each neighbour votes for its class with weight exp(similarity / temperature). The training bank is sharded over
the mesh: every device finds the top k of its own slice, the candidates are gathered and the top k of those are
kept, so the bank never has to fit on one device and no [queries, bank] matrix is ever materialised whole.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec


def l2_normalize(x) -> np.ndarray:
  """Rows of a host array scaled to unit norm, float32."""
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _local_top_k(queries, bank, bank_labels, k: int, axis: str):
  """Inside shard_map: the top k of this device's bank slice, then of all devices' candidates."""
  similarities = jnp.where(bank_labels >= 0, queries @ bank.T, -jnp.inf)  # Padding rows (label -1) never win.
  similarities, index = jax.lax.top_k(similarities, min(k, bank.shape[0]))  # Over the local slice.
  labels = bank_labels[index]
  similarities = jax.lax.all_gather(similarities, axis, axis=1, tiled=True)  # [Q, devices * k]
  labels = jax.lax.all_gather(labels, axis, axis=1, tiled=True)
  similarities, best = jax.lax.top_k(similarities, k)
  return similarities, jnp.take_along_axis(labels, best, axis=1)


@functools.partial(jax.jit, static_argnames=("k", "num_classes", "temperature", "mesh"))
def _knn_votes(queries, bank, bank_labels, *, k: int, num_classes: int, temperature: float, mesh):
  axis = mesh.axis_names[0]
  find = jax.shard_map(
    functools.partial(_local_top_k, k=k, axis=axis),
    mesh=mesh,
    in_specs=(PartitionSpec(), PartitionSpec(axis), PartitionSpec(axis)),
    out_specs=PartitionSpec(),
    check_vma=False,
  )
  similarities, labels = find(queries, bank, bank_labels)
  weights = jnp.exp(similarities / temperature)
  return jnp.sum(jax.nn.one_hot(labels, num_classes) * weights[..., None], axis=1)  # [Q, C]


def knn_accuracy(
  train_x, train_y, test_x, test_y, num_classes: int, k: int, mesh, temperature: float = 0.07, chunk: int = 1024
) -> float:
  """Test accuracy of the weighted kNN classifier. train_x [N, D], test_x [M, D] (host arrays)."""
  devices = mesh.devices.size
  if k > len(train_x):
    raise ValueError(f"k={k} is larger than the {len(train_x)} training examples")
  pad = -len(train_x) % devices  # The bank is padded to a multiple of the device count with label -1.
  bank = np.concatenate([l2_normalize(train_x), np.zeros((pad, train_x.shape[1]), np.float32)])
  labels = np.concatenate([train_y, np.full(pad, -1)]).astype(np.int32)
  sharded = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
  bank, labels = jax.device_put(bank, sharded), jax.device_put(labels, sharded)
  correct = 0
  for start in range(0, len(test_x), chunk):
    queries = l2_normalize(test_x[start : start + chunk])
    votes = _knn_votes(queries, bank, labels, k=k, num_classes=num_classes, temperature=temperature, mesh=mesh)
    correct += int(np.sum(np.argmax(np.asarray(votes), -1) == test_y[start : start + chunk]))
  return correct / len(test_x)


def run(context, ks=(20, 200), temperature: float = 0.07) -> dict:
  """{"knn/<features>/k<k>": test accuracy} for every feature set and k."""
  features, train_y, test_y = context.features()
  num_classes = context.train_source.num_classes
  results = {}
  for name, (train_x, test_x) in features.items():
    for k in ks:
      accuracy = knn_accuracy(train_x, train_y, test_x, test_y, num_classes, k, context.mesh, temperature)
      results[f"knn/{name}/k{k}"] = accuracy
  return results
