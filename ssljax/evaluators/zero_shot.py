"""Zero-shot classification and image-text retrieval of a two-tower model (CLIP, Radford et al. 2021, 3.1.4).

Zero-shot: each class is the mean of its prompts' l2-normalised text embeddings over the templates, normalised
again (CLIP's prompt ensemble); an image is assigned the class of highest cosine. Retrieval on the test split's
pairs: recall@k is the fraction of queries with a relevant item among their k most similar (ties broken by index),
and an item is relevant when its caption is the query's caption (image -> text) or its image's caption is the
query (text -> image), token for token: with one caption per image and no duplicates this is the usual recall@k,
and identical captions (the synthetic captions of the embedded default repeat within a class) count alike.
"""

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import data, text
from ssljax.config import ConfigError


def class_embeddings(embed_text, class_names, templates, context_length: int, tokenizer) -> np.ndarray:
  """[C, D] unit rows: per class, the normalised mean of its prompts' normalised embeddings."""
  prompts = [template.format(name) for name in class_names for template in templates]
  embeddings = np.asarray(embed_text(text.tokenize(prompts, context_length, tokenizer)), np.float64)
  means = embeddings.reshape(len(class_names), len(templates), -1).mean(axis=1)
  return means / np.linalg.norm(means, axis=1, keepdims=True)


def recall_at_k(similarity: np.ndarray, relevant: np.ndarray, ks) -> dict:
  """{k: fraction of queries (rows) with a relevant candidate among their k highest similarities}."""
  order = np.argsort(-similarity, axis=1, kind="stable")
  hits = np.take_along_axis(relevant, order, axis=1)
  return {k: float(np.mean(hits[:, :k].any(axis=1))) for k in ks}


def _test_embeddings(context, max_examples: int):
  """(image embeddings [M, D], text embeddings [M, D], tokens [M, L], labels [M]) of the test split's first
  `max_examples` pairs."""
  embed = jax.jit(lambda variables, inputs: context.model.apply(variables, inputs, method="embed"))
  source = data.fixed_subset(context.test_source, max_examples, seed=0)
  parts = {"image_emb": [], "text_emb": [], "text": [], "label": []}
  for batch, valid in data.eval_batches(source, context.config.eval_batch_size, context.batch_sharding):
    if "text" not in batch:
      raise ConfigError("config.evals: zero_shot needs captions in the test split (config.dataset.captions)")
    out = embed(context.variables, {"image": batch["image"], "text": batch["text"]})
    for key, value in (*out.items(), ("text", batch["text"]), ("label", batch["label"])):
      parts[key].append(np.asarray(value)[:valid])
  return tuple(np.concatenate(parts[key]) for key in ("image_emb", "text_emb", "text", "label"))


def run(context, templates: tuple = text.ZERO_SHOT_TEMPLATES, ks=(1, 5, 10), max_examples: int = 5000) -> dict:
  """{"zero_shot/ssl/accuracy" (when the test split has class names), "retrieval/image_to_text/recall@k",
  "retrieval/text_to_image/recall@k"} on the test split, with the classes' prompts made by `templates` ("{}" for
  the class name). Retrieval reads one caption per image (the first of COCO's five: lower than the usual recall
  over all five)."""
  config = context.config
  if config.get("text") is None:
    raise ConfigError(f"config.evals: zero_shot needs a two-tower method (clip, siglip), not {config.method!r}")
  images, texts, tokens, labels = _test_embeddings(context, max_examples)
  results = {}
  class_names = getattr(context.test_source, "class_names", None)
  if class_names:  # Zero-shot classification needs classes; retrieval only the pairs (COCO).
    tokenizer = text.load_tokenizer(config.text.tokenizer)
    embed = jax.jit(lambda variables, tokens: context.model.apply(variables, {"text": tokens}, method="embed"))
    classes = class_embeddings(
      lambda tokens: embed(context.variables, jnp.asarray(tokens))["text_emb"],
      class_names,
      tuple(templates),
      config.text.context_length,
      tokenizer,
    )
    predictions = np.argmax(images @ classes.T, axis=1)
    results["zero_shot/ssl/accuracy"] = float(np.mean(predictions == labels))
  same_caption = np.all(tokens[:, None, :] == tokens[None, :, :], axis=-1)
  similarity = np.asarray(images, np.float64) @ np.asarray(texts, np.float64).T
  for direction, scores in (("image_to_text", similarity), ("text_to_image", similarity.T)):
    for k, recall in recall_at_k(scores, same_caption, ks).items():
      results[f"retrieval/{direction}/recall@{k}"] = recall
  return results
