"""The one train step every method shares, and the sharded train state it updates.

The step is a pure function of (state, batch): its randomness is `fold_in(state.rng, state.step)`, so a step is
reproducible from a checkpoint alone. A linear classifier on stop-gradient features ("online probe", as in
SimCLR) trains alongside when the data has labels; it never changes the representation.
"""

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ssljax.methods import Method


class WithOnlineProbe(nn.Module):
  """A method's model plus a linear probe on its stop-gradient "features"."""

  model: nn.Module
  num_classes: int

  @nn.compact
  def __call__(self, inputs, train: bool = True):
    outputs = self.model(inputs, train=train)
    outputs["probe_logits"] = nn.Dense(self.num_classes, name="probe")(jax.lax.stop_gradient(outputs["features"]))
    return outputs

  def encode(self, images):
    return self.model.encode(images)


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  model_state: Any  # Non-trainable collections, e.g. {"batch_stats": ...}.
  opt_state: Any
  rng: jax.Array  # Raw uint32 key; the step's key is fold_in(rng, step).


def init_state(model: nn.Module, tx: optax.GradientTransformation, sample_inputs, seed: int) -> TrainState:
  """A fresh train state. Call under `jax.jit(..., out_shardings=...)` so it is created sharded."""
  rng = jax.random.PRNGKey(seed)
  init_rng, train_rng = jax.random.split(rng)
  variables = model.init(init_rng, sample_inputs, train=True)
  params = variables.pop("params")
  return TrainState(jnp.zeros((), jnp.int32), params, dict(variables), tx.init(params), train_rng)


def train_step(state: TrainState, batch, *, model: nn.Module, method: Method, tx, schedule):
  """One optimizer update; returns (new state, dict of scalar metrics)."""
  rng = jax.random.fold_in(state.rng, state.step)
  input_rng, model_rng = jax.random.split(rng)
  inputs = method.make_inputs(batch["image"], input_rng)

  def loss_fn(params):
    outputs, new_model_state = model.apply(
      {"params": params, **state.model_state},
      inputs,
      train=True,
      mutable=list(state.model_state),
      rngs={"dropout": model_rng},
    )
    loss, metrics = method.loss(outputs)
    labels = jnp.tile(batch["label"], method.views_per_image)
    probe_logits = outputs["probe_logits"].astype(jnp.float32)
    probe_loss = optax.softmax_cross_entropy_with_integer_labels(probe_logits, labels).mean()
    metrics = {
      **metrics,
      "loss": loss,
      "probe_loss": probe_loss,
      "probe_accuracy": jnp.mean(jnp.argmax(probe_logits, -1) == labels),
    }
    return loss + probe_loss, (metrics, new_model_state)

  grads, (metrics, new_model_state) = jax.grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {**metrics, "learning_rate": schedule(state.step)}
  new_state = state.replace(step=state.step + 1, params=params, model_state=new_model_state, opt_state=opt_state)
  return new_state, metrics
