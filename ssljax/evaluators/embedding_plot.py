"""2-D embeddings (t-SNE; UMAP when `umap-learn` is installed) of test features coloured by class, as PNG in the
workdir and TensorBoard, with the silhouette score of the classes in the embedding as the number to track."""

import jax
import numpy as np
from absl import logging

from ssljax import paths
from ssljax.config import ConfigError

# Matplotlib's tab10 colours, then tab20's light variants for classes 10-19 (more classes reuse them).
PALETTE = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
  "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
]  # fmt: skip


def embed_2d(features: np.ndarray, method: str, seed: int) -> np.ndarray:
  """[N, D] -> [N, 2]."""
  if method == "tsne":
    from sklearn.manifold import TSNE

    perplexity = min(30.0, (len(features) - 1) / 3)
    return TSNE(2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(features)
  if method == "umap":
    import umap

    return umap.UMAP(random_state=seed).fit_transform(features)
  raise ConfigError(f"config.evals.*.methods: unknown embedding {method!r} (tsne, umap)")


def scatter_png(coords: np.ndarray, labels: np.ndarray, title: str, size: int = 512) -> np.ndarray:
  """uint8 [size, size, 3]: one dot per point in its class colour, a legend of class ids and a title."""
  from PIL import Image, ImageDraw

  image = Image.new("RGB", (size, size), "white")
  draw = ImageDraw.Draw(image)
  low, high = coords.min(0), coords.max(0)
  margin = 24
  points = margin + (coords - low) / np.maximum(high - low, 1e-9) * (size - 2 * margin)
  order = np.random.default_rng(0).permutation(len(points))  # No class is drawn entirely on top.
  for (x, y), label in zip(points[order], labels[order], strict=True):
    draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=PALETTE[label % len(PALETTE)])
  draw.text((4, 4), title, fill="black")
  for i, label in enumerate(np.unique(labels)):
    draw.text((size - 20, 4 + 12 * i), str(label), fill=PALETTE[label % len(PALETTE)])
  return np.asarray(image)


def run(context, methods=("tsne",), features=("ssl", "raw_pixels"), max_points: int = 2000, seed: int = 0) -> dict:
  """{"<method>/<features>/silhouette": silhouette of the test classes in the 2-D embedding}; writes
  WORKDIR/<method>_<features>.png. A method whose package is missing is skipped with a warning."""
  from sklearn.metrics import silhouette_score

  all_features, _, test_y = context.features()
  subset = np.sort(np.random.default_rng(seed).permutation(len(test_y))[:max_points])
  results = {}
  for method in methods:
    for name in [f for f in features if f in all_features]:
      try:
        coords = embed_2d(all_features[name][1][subset], method, seed)
      except ImportError:
        logging.warning("embedding plot: %s is not installed (pip install umap-learn); skipped", method)
        break
      labels = test_y[subset]
      results[f"{method}/{name}/silhouette"] = float(silhouette_score(coords, labels))
      png = scatter_png(coords, labels, f"{method} of {name} test features")
      if jax.process_index() == 0:
        paths.write_png(paths.resolve(context.workdir) / f"{method}_{name}.png", png)
      if context.writer is not None:
        context.writer.write_image(0, f"{method}/{name}", png)
  return results
