"""The one train step every method shares, the sharded train state it updates, and `build_trainer`, which
compiles both for a config on a mesh.

The step is a pure function of (state, batch): its randomness is `fold_in(state.rng, state.position)`, so a step
is reproducible from a checkpoint alone. An update whose loss, gradients or result are not finite is skipped (the
state keeps its values, the step still counts and reports `nonfinite` = 1), so one bad batch never reaches the
parameters; `ssljax.experiment` rolls back after several in a row.

Methods with state beyond parameters keep it in the train state, so it is sharded, checkpointed and reverted
with the rest: an EMA teacher in `TrainState.target` (run before the online forward, updated after the
optimizer by the method's per-step momentum), queues and centres in the model's "buffers" collection (part of
`model_state`). Methods with several players (a GAN) update them in sequence inside the step, each with its own
optimizer on its own parameters (`ssljax.methods.Player`), and a non-finite value in any update skips them all.
Every schedule is a function of the checkpointed step. A linear classifier on stop-gradient features ("online
probe", as in SimCLR) trains alongside unless `config.online_probe` is False; it never changes the representation.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ssljax import data, optim, sharding
from ssljax.config import ConfigError
from ssljax.methods import BuildInfo, Method, build_method


class WithOnlineProbe(nn.Module):
  """A method's model plus a linear probe on its stop-gradient "features"."""

  model: nn.Module
  num_classes: int

  @nn.compact
  def __call__(self, inputs, train: bool = True, **kwargs):
    outputs = self.model(inputs, train=train, **kwargs)
    outputs["probe_logits"] = nn.Dense(self.num_classes, name="probe")(jax.lax.stop_gradient(outputs["features"]))
    return outputs

  def encode(self, images):
    return self.model.encode(images)

  def teach(self, inputs):
    return self.model.teach(inputs)

  def embed(self, inputs):
    return self.model.embed(inputs)

  def predict(self, tokens):
    return self.model.predict(tokens)

  def word_vectors(self):
    return self.model.word_vectors()

  def posterior(self, images, labels):
    return self.model.posterior(images, labels)

  def decode(self, z, labels):
    return self.model.decode(z, labels)

  def colorize(self, images):
    return self.model.colorize(images)

  def pixel_logits(self, images, labels, low_res=None):
    return self.model.pixel_logits(images, labels, low_res)


def encoder_variables(variables: dict) -> dict:
  """The encoder's part ({collection: subtree}) of the variables of a method's model, with or without the online
  probe around it (see `Method.model`); collections without an encoder part (a MoCo queue) are left out."""
  models = {name: tree["model"] if "model" in tree else tree for name, tree in variables.items()}
  return {name: tree["encoder"] for name, tree in models.items() if "encoder" in tree}


def replace_encoder(variables: dict, encoder: dict) -> dict:
  """`variables` of a method's model (with or without the online probe) with the encoder's part replaced by
  `encoder` ({collection: subtree}, as `encoder_variables` returns them)."""

  def put(tree, part):
    return {**tree, "model": put(tree["model"], part)} if "model" in tree else {**tree, "encoder": part}

  return {name: put(tree, encoder[name]) if name in encoder else tree for name, tree in variables.items()}


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # Batches this state has gone through (updates applied or skipped); names its checkpoint.
  position: jax.Array  # Index of the next batch in the step-indexed input; > step after a rollback skipped data.
  params: Any
  model_state: Any  # Non-trainable collections, e.g. {"batch_stats": ...}.
  opt_state: Any
  rng: jax.Array  # Raw uint32 key; a step's key is fold_in(rng, position): data and randomness move together.
  target: Any = dataclasses.field(default_factory=dict)  # EMA teacher {"params", "batch_stats"}, or {}.


def init_state(model: nn.Module, tx, sample_inputs, seed: int, with_teacher: bool = False) -> TrainState:
  """A fresh train state; the teacher (if any) starts as a copy of the parameters and BatchNorm statistics. Call
  under `jax.jit(..., out_shardings=...)` so it is created sharded."""
  rng = jax.random.PRNGKey(seed)
  init_rng, train_rng = jax.random.split(rng)
  variables = nn.meta.unbox(model.init(_rng_streams(init_rng), sample_inputs, train=True))
  params = variables.pop("params")
  target = {}
  if with_teacher:  # Copies (their own buffers): the online and teacher trees are donated separately.
    target = jax.tree.map(jnp.copy, {"params": params, **{k: v for k, v in variables.items() if k == "batch_stats"}})
  zero = jnp.zeros((), jnp.int32)
  return TrainState(zero, zero, params, dict(variables), tx.init(params), train_rng, target)


def eval_variables(state: TrainState, method: Method) -> dict:
  """The variables evaluation reads: the online network's, or the teacher's for methods that evaluate it."""
  variables = {"params": state.params, **state.model_state}
  return {**variables, **state.target} if method.evaluate_teacher else variables


def _rng_streams(rng) -> dict:
  """The named rng streams a model may draw from: "params", "dropout" (dropout, stochastic depth), "masking"."""
  params_rng, dropout_rng, masking_rng = jax.random.split(rng, 3)
  return {"params": params_rng, "dropout": dropout_rng, "masking": masking_rng}


def train_step(state: TrainState, batch, *, model: nn.Module, method: Method, tx, schedule):
  """One optimizer update, or one round of the players' updates (skipped when anything is non-finite); returns (new
  state, dict of scalar metrics)."""
  rng = jax.random.fold_in(state.rng, state.position)
  update = _play if method.players else _descend
  updated, finite, metrics = update(state, batch, rng, model=model, method=method, tx=tx)
  with jax.named_scope("guard"):
    params, model_state, opt_state, target = jax.tree.map(
      lambda new, old: jnp.where(finite, new, old),
      updated,
      (state.params, state.model_state, state.opt_state, state.target),
    )
  metrics = {**metrics, "learning_rate": schedule(state.step), "nonfinite": 1 - finite.astype(jnp.int32)}
  new_state = state.replace(
    step=state.step + 1,
    position=state.position + 1,
    params=params,
    model_state=model_state,
    opt_state=opt_state,
    target=target,
  )
  return new_state, metrics


def _forward(model: nn.Module, params, model_state, inputs, rng, **kwargs):
  """The train-mode forward of the losses: (outputs, the collections it wrote)."""
  variables = {"params": params, **model_state}
  return model.apply(variables, inputs, train=True, mutable=list(model_state), rngs=_rng_streams(rng), **kwargs)


def _descend(state: TrainState, batch, rng, *, model: nn.Module, method: Method, tx):
  """One update of every parameter on `method.loss` (+ the online probe's): returns ((params, model_state,
  opt_state, target) after it, whether it is finite, metrics)."""
  input_rng, model_rng = jax.random.split(rng)
  # Named scopes (augment, teacher, forward_backward, optimizer, guard) label the kernels of a profile.
  with jax.named_scope("augment"):
    inputs = method.make_inputs(batch, input_rng)
  teacher, target = {}, state.target
  if method.teacher_momentum is not None:  # Before value_and_grad: no gradient can reach the teacher.
    with jax.named_scope("teacher"):
      teacher, teacher_stats = model.apply(
        target, inputs, method="teach", mutable=[k for k in target if k != "params"], rngs=_rng_streams(model_rng)
      )
    teacher, target = jax.lax.stop_gradient(teacher), {**target, **teacher_stats}

  def loss_fn(params):
    kwargs = {"teacher": teacher} if teacher else {}
    outputs, new_model_state = _forward(model, params, state.model_state, inputs, model_rng, **kwargs)
    loss, metrics = method.loss({**outputs, "teacher": teacher} if teacher else outputs, batch, state.step)
    metrics = {**metrics, "loss": loss}
    if "probe_logits" not in outputs:
      return loss, (metrics, new_model_state)
    labels = jnp.tile(batch["label"], method.views_per_image)
    probe_logits = outputs["probe_logits"].astype(jnp.float32)
    probe_loss = optax.softmax_cross_entropy_with_integer_labels(probe_logits, labels).mean()
    metrics["probe_loss"] = probe_loss
    metrics["probe_accuracy"] = jnp.mean(jnp.argmax(probe_logits, -1) == labels)
    return loss + probe_loss, (metrics, new_model_state)

  with jax.named_scope("forward_backward"):
    (total_loss, (metrics, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  with jax.named_scope("optimizer"):
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    if method.frozen is not None:  # Zero the final updates: no decay or momentum moves a frozen parameter.
      frozen = method.frozen(updates, state.step)
      updates = jax.tree.map(lambda u, f: jnp.where(f, jnp.zeros_like(u), u), updates, frozen)
      opt_state = hold_frozen_state(opt_state, state.opt_state, frozen)
    params = optax.apply_updates(state.params, updates)
    if method.post_update is not None:  # Writes that are not gradients; reverted with the rest on a bad step.
      params, new_model_state = method.post_update(params, new_model_state, state.step, jax.random.fold_in(rng, 1))
    if method.teacher_momentum is not None:  # EMA of the *updated* parameters; the step size is 1 - tau.
      tau = method.teacher_momentum(state.step)
      target = {**target, "params": optax.incremental_update(params, target["params"], 1.0 - tau)}
      metrics["teacher_momentum"] = tau
  # The loss, the gradients and the state the forward passes wrote (BatchNorm statistics, buffers, the teacher's
  # statistics) decide the skip: from finite gradients and finite parameters the optimizer and the EMA can only
  # produce finite values, so the updated parameters need no pass of their own (and checkpoints none either).
  finite = jnp.isfinite(total_loss) & all_finite(
    (grads, new_model_state, {k: v for k, v in target.items() if k != "params"})
  )
  return (params, new_model_state, opt_state, target), finite, metrics


def _play(state: TrainState, batch, rng, *, model: nn.Module, method: Method, tx: optim.PlayerOptimizers):
  """Every player's updates in the order of `method.players`, each on its own parameter subtree with its own
  optimizer, each forward seeing the parameters and BatchNorm statistics the previous updates left: returns
  ((params, model_state, opt_state, target), whether every update is finite, metrics "<player>/<name>" averaged
  over the player's updates)."""

  def objective(own, params, model_state, inputs, part, model_rng, player):
    params = {**params, player.subtree: own}
    outputs, new_model_state = _forward(model, params, model_state, inputs, model_rng, player=player.name)
    loss, player_metrics = player.loss(outputs, part, state.step)
    return loss, ({**player_metrics, "loss": loss}, new_model_state)

  params, model_state, opt_state = state.params, state.model_state, dict(state.opt_state)
  finite, metrics = jnp.array(True), {}
  for number, player in enumerate(method.players):
    player_tx = tx.optimizers[player.name][1]
    history = []
    for update in range(player.updates):
      part = batch if player.updates == 1 else interleaved_part(batch, update, player.updates)
      input_rng, model_rng = jax.random.split(jax.random.fold_in(jax.random.fold_in(rng, number), update))
      with jax.named_scope(f"{player.name}_augment"):
        inputs = method.make_inputs(part, input_rng)
      with jax.named_scope(f"{player.name}_forward_backward"):
        (loss, (player_metrics, model_state)), grads = jax.value_and_grad(objective, has_aux=True)(
          params[player.subtree], params, model_state, inputs, part, model_rng, player
        )
      with jax.named_scope(f"{player.name}_optimizer"):
        updates, opt_state[player.name] = player_tx.update(grads, opt_state[player.name], params[player.subtree])
        params = {**params, player.subtree: optax.apply_updates(params[player.subtree], updates)}
      finite = finite & jnp.isfinite(loss) & all_finite((grads, model_state))
      history.append(player_metrics)
    metrics |= {f"{player.name}/{k}": jnp.mean(jnp.stack([m[k] for m in history])) for k in history[0]}
  return (params, model_state, opt_state, state.target), finite, metrics


def interleaved_part(batch, part: int, parts: int):
  """Rows part, part + parts, part + 2 parts, ... of every array of `batch`: one of `parts` disjoint parts, each
  spread over the devices as the batch is (a contiguous slice would sit on a few devices)."""
  return jax.tree.map(lambda x: x.reshape(x.shape[0] // parts, parts, *x.shape[1:])[:, part], batch)


def hold_frozen_state(new_opt_state, old_opt_state, frozen):
  """The optimizer state after an update in which the parameters marked in `frozen` took no part: every subtree
  shaped like the parameters (momentum, Adam's moments) keeps its old values there, as in the references, which
  give a frozen parameter no gradient (torch optimizers skip it), so nothing accumulates during a freeze and is
  released after it. Scalars shared by all parameters (Adam's step count) still advance."""
  structure = jax.tree.structure(frozen)

  def per_parameter(tree):
    return jax.tree.structure(tree) == structure

  def hold(new, old):
    if not per_parameter(new):
      return new
    return jax.tree.map(lambda n, o, f: jnp.where(f, o, n), new, old, frozen)

  return jax.tree.map(hold, new_opt_state, old_opt_state, is_leaf=per_parameter)


def all_finite(tree) -> jax.Array:
  """A scalar bool: every floating-point leaf of `tree` is free of NaN and inf (and of values above ~1e19, whose
  square overflows float32: only a diverged run has them).

  One global squared norm: per-leaf `isfinite(x).all()` (or max |x|, or sum x) made the compiled train step more
  than twice as slow to compile (ResNet-18 SimCLR step on CPU: 32-35 s vs 15 s; no guard at all: 13.4 s)."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.isfinite(optax.tree.norm(leaves)) if leaves else jnp.array(True)


def total_steps(config, num_examples: int) -> int:
  if config.get("total_steps"):
    return config.total_steps
  return int(config.epochs * num_examples // config.batch_size)


@dataclasses.dataclass(frozen=True)
class Trainer:
  """Everything a run compiles for `config` on `mesh`; `make_state(seed)`, `step(state, batch)` and
  `encode(variables, images)` (evaluation features) are jitted."""

  model: nn.Module
  method: Method
  num_steps: int
  make_state: Callable
  state_sharding: Any
  batch_sharding: Any
  step: Callable
  encode: Callable


def build_trainer(config, mesh, num_examples: int, num_classes: int, token_counts=None, train_source=None) -> Trainer:
  """`token_counts`: text data's unigram counts (`data.TokenSource.token_counts`), for methods that sample by them;
  `train_source`: the training data, for methods whose loss needs a statistic of it (None where nothing trains)."""
  sharding.check_batch_size(config.batch_size, ways=sharding.batch_devices(mesh))
  replicated = sharding.replicated(mesh)
  num_steps = total_steps(config, num_examples)
  steps_per_epoch = max(1, num_examples // config.batch_size)
  info = BuildInfo(num_classes, mesh, num_steps, steps_per_epoch, num_examples, token_counts, train_source)
  method = build_method(config, info)
  with_probe = config.get("online_probe", True) and num_classes > 0  # Unlabelled data: no probe.
  if method.players:
    tx, schedule = _player_optimizers(config, method, mesh, num_steps, num_examples, with_probe)
  else:
    tx, schedule = optim.make_optimizer(
      config, config.batch_size, num_steps, method.optimizer_groups, steps_per_epoch=num_examples / config.batch_size
    )
  model = WithOnlineProbe(method.model, num_classes) if with_probe else method.model
  size = config.dataset.get("image_size")
  images = {} if data.is_text(config.dataset) else {"image": jnp.zeros((1, size, size, config.dataset.channels))}
  sample_batch = {
    **images,
    "label": jnp.zeros((1,), jnp.int32),
    "index": jnp.zeros((1,), jnp.int32),
    **{key: jnp.zeros((1, *shape), dtype) for key, (shape, dtype) in method.extra_batch.items()},
  }
  sample_inputs = method.make_inputs(sample_batch, jax.random.PRNGKey(0))
  init = functools.partial(init_state, model, tx, sample_inputs, with_teacher=method.teacher_momentum is not None)
  boxed = jax.eval_shape(lambda: model.init(_rng_streams(jax.random.PRNGKey(0)), sample_inputs, train=True))
  subtrees = [player.subtree for player in method.players]
  if subtrees and sorted(subtrees) != sorted(boxed["params"]):  # Each parameter trained by exactly one player.
    raise ValueError(
      f"{config.method}: the players' subtrees {subtrees} must split the parameters {list(boxed['params'])}"
    )
  state_sharding = sharding.state_sharding(
    jax.eval_shape(init, 0),
    sharding.logical_names(boxed["params"]),
    tx,
    mesh,
    sharding.logical_names({name: tree for name, tree in boxed.items() if name != "params"}),
  )
  batch_sharding = sharding.batch_sharding(mesh)
  step = jax.jit(
    functools.partial(train_step, model=model, method=method, tx=tx, schedule=schedule),
    donate_argnums=0,
    in_shardings=(state_sharding, batch_sharding),
    out_shardings=(state_sharding, replicated),
  )
  make_state = jax.jit(init, out_shardings=state_sharding)
  # Variables are arguments, not closed-over constants: one compilation serves every encoder and every evaluation.
  encode = jax.jit(lambda variables, images: model.apply(variables, images, method="encode"))
  return Trainer(model, method, num_steps, make_state, state_sharding, batch_sharding, step, encode)


def _player_optimizers(config, method: Method, mesh, num_steps: int, num_examples: int, with_probe: bool):
  """A multi-player method's optimizers, after the checks its players need: the batch splits evenly between the
  k updates of a player (and each part between the devices), and nothing of the one-objective contract (a probe
  reading the features, a teacher, freezes, optimizer groups, post-update writes) is asked for alongside."""
  for player in method.players:
    check = f"config.batch_size: {config.batch_size} does not split into {player.updates} {player.name} updates"
    if player.updates < 1 or config.batch_size % player.updates:
      raise ConfigError(check)
    sharding.check_batch_size(config.batch_size // player.updates, ways=sharding.batch_devices(mesh))
  if with_probe:
    raise ConfigError(
      f"config.online_probe: {config.method} trains several players, none of them a probe; set it to False (the"
      " feature evaluators still read the features after training)"
    )
  contract = {"teacher_momentum": None, "frozen": None, "post_update": None, "optimizer_groups": {}}
  for field, default in contract.items():
    if getattr(method, field) != default:
      raise ValueError(f"{config.method}: a method with players cannot also set Method.{field}")
  return optim.make_player_optimizers(
    config, method.players, config.batch_size, num_steps, steps_per_epoch=num_examples / config.batch_size
  )


def run_steps(step_fn: Callable, state, batches):
  """Applies `step_fn` to every (step, batch) of `batches`, yielding (step, new state, metrics).

  The host waits for step s - 1 to finish before it dispatches step s + 1, so at most two steps are in flight:
  enough to overlap input and compute, while unbounded asynchronous dispatch only queues memory on accelerators
  and can deadlock the collectives of virtual CPU devices (programs of many steps compete for the same threads).
  """
  previous = None
  for step, batch in batches:
    state, metrics = step_fn(state, batch)
    if previous is not None:
      jax.block_until_ready(previous)
    previous = metrics
    yield step, state, metrics
