"""What CLIP and SigLIP share: a two-tower model over `config.model` (images) and `config.text` (the text tower),
one augmented view per image beside its caption's tokens, and a pair loss run per device over the global batch."""

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from ssljax import augment, losses, models, sharding, text
from ssljax.config import ConfigError
from ssljax.config_checks import OPTIONAL_INT, Optional
from ssljax.methods import Method
from ssljax.models.two_tower import TextTransformer, TwoTower

PAIR_SCHEMA = {"embed_dim": int, "block_size": Optional(OPTIONAL_INT)}


def make_inputs(batch, key, view):
  """{"image": one augmented view [N, size, size, C], "text": the captions' tokens [N, L]}."""
  return {"image": augment.single_view(batch, key, view), "text": batch["text"]}


def pair_loss(outputs, batch, step, *, loss, scalars, block_size, mesh):
  """`loss(image_emb, text_emb, *scalars(outputs), block_size=..., axis_name=...)` inside `jax.shard_map` over
  the mesh's batch axes (each device's rows stay on it; the loss reaches the global batch by its own
  collectives), with the positive pairs' mean cosine and the image embeddings' spread as metrics."""
  del batch, step  # The pairs are the rows; no schedule.
  image_emb, text_emb = outputs["image_emb"], outputs["text_emb"]
  values = scalars(outputs)
  local = functools.partial(loss, block_size=block_size)
  if mesh is None:
    value = local(image_emb, text_emb, *values)
  else:
    axes = sharding.batch_axes(mesh)
    in_specs = (P(axes), P(axes)) + (P(),) * len(values)
    value = jax.shard_map(functools.partial(local, axis_name=axes), mesh=mesh, in_specs=in_specs, out_specs=P())(
      image_emb, text_emb, *values
    )
  metrics = {
    "positive_cosine": jnp.mean(jnp.sum(image_emb * text_emb, axis=-1)),
    "embedding_std": losses.embedding_std(image_emb),  # Collapse: 0; unit rows spread evenly: 1 / sqrt(dim).
  }
  return value, metrics


def build_method(config, info, *, scalars: dict, loss, scalar_values, post_update=None) -> Method:
  """A two-tower method: `scalars` {name: initial value} of the loss, `scalar_values(outputs)` the loss's
  arguments made from them."""
  if config.get("text") is None:  # Its keys are checked with the config's (config_checks).
    raise ConfigError(f"config.text: missing (method {config.method!r} needs a text tower)")
  dtype = jnp.dtype(config.dtype)
  section = config.text
  encoder = models.build_encoder(config.model, config.dataset.image_size, dtype)
  tokenizer = text.load_tokenizer(section.tokenizer)
  text_encoder = TextTransformer(
    text.vocab_size(tokenizer),
    section.context_length,
    section.width,
    section.depth,
    section.num_heads,
    causal=section.causal,
    eos_id=text.eos_id(tokenizer),
    dtype=dtype,
  )
  method_config = config[config.method]
  model = TwoTower(encoder, text_encoder, method_config.embed_dim, tuple(scalars.items()), dtype)
  view = augment.AugmentConfig(size=config.dataset.image_size, **config.augment)
  return Method(
    model=model,
    make_inputs=functools.partial(make_inputs, view=view),
    loss=functools.partial(
      pair_loss, loss=loss, scalars=scalar_values, block_size=method_config.get("block_size"), mesh=info.mesh
    ),
    views_per_image=1,
    crops=(view,),
    post_update=post_update,
    extra_batch={"text": ((section.context_length,), jnp.int32)},
  )
