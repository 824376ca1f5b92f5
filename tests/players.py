"""What the tests of multi-player methods (tests/test_gan.py, tests/test_cyclegan.py) share: one player's update
recomputed by hand, as `train_step._play` derives it, and config overrides by dotted key."""

import jax

from ssljax import train_step


def player_grad(trainer, state, number: int, update: int, part, params, model_state):
  """Player `number`'s loss, its gradient on its own subtree and the collections its forward wrote, for its
  `update`-th update of the step that starts from `state` (its rng), on the batch part `part`, with `params` and
  `model_state` as the previous updates left them."""
  method, player = trainer.method, trainer.method.players[number]
  rng = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(state.rng, state.position), number), update)
  input_rng, model_rng = jax.random.split(rng)
  inputs = method.make_inputs(part, input_rng)

  def loss(own):
    outputs, new_state = trainer.model.apply(
      {"params": {**params, player.subtree: own}, **model_state},
      inputs,
      player=player.name,
      mutable=list(model_state),
      rngs=train_step._rng_streams(model_rng),
    )
    return player.loss(outputs, part, 0)[0], new_state

  (value, new_state), grad = jax.value_and_grad(loss, has_aux=True)(params[player.subtree])
  return value, grad, new_state


def with_updates(config, **updates):
  """`config` with each dotted key ("dataset.image_size") set to its value."""
  for key, value in updates.items():
    section, _, name = key.rpartition(".")
    (config[section] if section else config)[name] = value
  return config
