"""Word vectors, as the lectures inspect word2vec's: nearest neighbours of a few words, analogies (a : b :: c : ?
by 3CosAdd, Mikolov et al. 2013: the word closest to b - a + c other than a, b and c) and a t-SNE of the most
frequent words, for the method's vectors (word2vec's input vectors; GPT's and BERT's token embeddings) and a
random network's.

Writes WORKDIR/word_neighbours.txt and WORKDIR/word_vectors_tsne.png (also to TensorBoard)."""

import jax
import numpy as np
from absl import logging

from ssljax import data, paths, text


def unit_rows(vectors: np.ndarray) -> np.ndarray:
  vectors = np.asarray(vectors, np.float64)
  return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def nearest(unit: np.ndarray, query: np.ndarray, exclude, k: int) -> list[int]:
  """The `k` rows of `unit` most cosine-similar to `query`, excluding the ids in `exclude`."""
  scores = unit @ (query / max(np.linalg.norm(query), 1e-12))
  scores[list(exclude)] = -np.inf
  return [int(i) for i in np.argsort(-scores)[:k]]


def analogy_accuracy(unit: np.ndarray, questions, specials) -> float:
  """Top-1 accuracy of 3CosAdd on `questions` [(a, b, c, d) ids] over unit word vectors; nan without questions."""
  hits = [nearest(unit, unit[b] - unit[a] + unit[c], {a, b, c, *specials}, 1)[0] == d for a, b, c, d in questions]
  return float(np.mean(hits)) if hits else float("nan")


def word_png(coords: np.ndarray, labels: list[str], title: str, size: int = 1024) -> np.ndarray:
  """uint8 [size, size, 3]: each word written at its 2-D position."""
  from PIL import Image, ImageDraw

  image = Image.new("RGB", (size, size), "white")
  draw = ImageDraw.Draw(image)
  low, high = coords.min(0), coords.max(0)
  points = 24 + (coords - low) / np.maximum(high - low, 1e-9) * (size - 96)
  for (x, y), label in zip(points, labels, strict=True):
    draw.text((x, y), label, fill="black")
  draw.text((4, 4), title, fill="black")
  return np.asarray(image)


def run(context, words=text.PROBE_WORDS, neighbours: int = 8, plot_words: int = 300, seed: int = 0) -> dict:
  """{"word_vectors/<features>/analogy_top1"} for "ssl" and "random_init", and the number of analogies asked."""
  from ssljax.evaluators.embedding_plot import embed_2d

  tokenizer = text.load_tokenizer(context.config.text.tokenizer)
  specials = set(text.special_ids(tokenizer))
  vectors = {"ssl": context.model.apply(context.variables, method="word_vectors")}
  if "random_init" in context.encoders:
    encoder = context.method.model.encoder
    vectors["random_init"] = encoder.apply(context.encoders["random_init"](), method="word_vectors")
  questions = [ids for q in text.ANALOGIES if None not in (ids := tuple(text.token_id(tokenizer, w) for w in q))]
  results = {"word_vectors/ssl/analogies": float(len(questions))}
  lines = [f"{len(questions)} of {len(text.ANALOGIES)} analogies have all four words in the vocabulary"]
  for name, table in vectors.items():
    unit = unit_rows(jax.device_get(table))
    results[f"word_vectors/{name}/analogy_top1"] = analogy_accuracy(unit, questions, specials)
    lines.append(f"\n[{name}] nearest neighbours (cosine):")
    for word in words:
      if (index := text.token_id(tokenizer, word)) is None:
        lines.append(f"  {word}: not in the vocabulary")
        continue
      found = nearest(unit, unit[index], {index, *specials}, neighbours)
      lines.append(f"  {word}: " + ", ".join(tokenizer.decode([i]).strip() for i in found))
  report = "\n".join(lines)
  logging.info("word vectors:\n%s", report)
  counts = data.token_counts(context.train_source, context.config).astype(np.float64)
  counts[list(specials)] = 0
  frequent = np.argsort(-counts)[: min(plot_words, int((counts > 0).sum()))]
  coords = embed_2d(unit_rows(jax.device_get(vectors["ssl"]))[frequent], "tsne", seed)
  png = word_png(coords, [tokenizer.decode([int(i)]).strip() for i in frequent], "t-SNE of the most frequent words")
  if jax.process_index() == 0:
    workdir = paths.resolve(context.workdir)
    paths.write_atomic(workdir / "word_neighbours.txt", report + "\n")
    paths.write_png(workdir / "word_vectors_tsne.png", png)
  if context.writer is not None:
    context.writer.write_image(0, "word_vectors/tsne", png)
  return results
