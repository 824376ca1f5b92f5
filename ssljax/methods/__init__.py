"""Self-supervised methods. A method is one small module with `build(config, info) -> Method`; all of them are
trained by the one step in `ssljax.train_step`, which also gives them an EMA teacher, running buffers, per-step
schedules, frozen parameters and optimizer groups when they ask for them."""

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax.config import ConfigError, require_choice


@dataclasses.dataclass(frozen=True)
class BuildInfo:
  """What a method may need to know about the run it is built for."""

  num_classes: int
  mesh: Any = None  # The mesh the train step runs on, so a loss can place its own collectives.
  num_steps: int = 1  # Total optimizer steps (per-step schedules: BYOL's teacher momentum).
  steps_per_epoch: int = 1  # Per-epoch schedules (DINO's teacher temperature, its frozen last layer).
  num_examples: int = 0  # Training examples (DeepCluster-v2's memory bank holds one row each).
  token_counts: Any = None  # Text: int [vocab] occurrences of each token in the training data (word2vec's noise).
  train_source: Any = None  # The training data, for a statistic of it (colorization's colour distribution).


@dataclasses.dataclass(frozen=True)
class Method:
  """What the shared train step needs to know about a method.

  Attributes:
    model: Flax module with a submodule attribute `encoder` (the trunk that evaluation and fine-tuning reuse,
      so its parameters live under "encoder"); `model(inputs, train=..., teacher=...)` returns a dict with at
      least "features" (the representation the online probe reads) and whatever `loss` needs;
      `model.encode(images)` returns the features of un-augmented images in inference mode. It may draw from the
      rng streams "dropout" and "masking", and keep running buffers (queues, centres) in the "buffers"
      collection: it reads their old value for its outputs, then writes the new one.
    make_inputs: (batch {"image" [N, H, W, C] in [0, 1], "label"}, rng) -> model inputs; runs inside jit. Text
      methods (their module says `DATA = "text"`) get {"text" int32 [N, L] token rows, "label"} instead, and
      their `encode` takes the token rows.
    loss: (outputs, batch, step) -> (scalar loss, dict of scalar metrics). With a teacher, `outputs["teacher"]`
      holds the teacher's outputs (no gradient reaches them).
    views_per_image: how many rows of "features" each input image contributes (the probe tiles labels so).
    crops: the AugmentConfig of every view `make_inputs` cuts from an image, in the order it reads them (global
      views, then local ones): with `config.dataset.host_crops` their random resized crops are cut on the host
      from the full decoded images (`data.HostCrops`, batch["crops"]) and the device runs the rest.
    teacher_momentum: step -> tau. When set, the train state holds an EMA teacher (its own params and BatchNorm
      statistics): `model.teach(inputs)` runs it before the online forward, with train-mode BatchNorm, and after
      the optimizer `teacher = tau * teacher + (1 - tau) * params`.
    evaluate_teacher: evaluation and fine-tuning read the teacher's variables (DINO), not the online ones.
    frozen: (params, step) -> a tree of bool scalars, True where the update is zeroed (after the optimizer, so
      neither weight decay nor momentum moves a frozen parameter).
    optimizer_groups: {name: overrides of config.optimizer} for the parameters whose path contains `name`,
      e.g. {"predictor": {"schedule": "constant"}} (SimSiam's fixed predictor learning rate).
    post_update: (params, model_state, step, rng) -> (params, model_state), applied after every optimizer update
      (before the teacher's EMA): writes that are not gradients, e.g. SwAV's prototypes projected back onto the
      unit sphere, DeepCluster-v2's k-means at the end of each epoch (under `lax.cond`).
    per_epoch: host-level work at every epoch's start and the epoch's order of examples (`PerEpoch`:
      DeepCluster's clustering of the whole training set and its sampling uniform over clusters).
    extra_batch: {key: (shape of one example's value, dtype)} of what the method reads from the batch beyond
      "image", "label" and "index" (CLIP's "text" tokens [L]): the data must provide them, and the model is
      initialised with them.
    encoder_input: images [N, H, W, C] in [0, 1] -> what `model.encoder` reads (colorization: the L channel), for
      code that runs the encoder on images itself (the random network's BatchNorm statistics); None: the images.
    players: the objectives of a method with several players (a GAN's discriminator and generator), updated in
      this order inside the one step, each by its own optimizer on its own parameters (`Player`); `loss` is then
      unused. Empty: one objective, `loss`, over every parameter.
  """

  model: nn.Module
  make_inputs: Callable
  loss: Callable
  views_per_image: int
  crops: tuple = ()
  teacher_momentum: Callable | None = None
  evaluate_teacher: bool = False
  frozen: Callable | None = None
  optimizer_groups: dict = dataclasses.field(default_factory=dict)
  post_update: Callable | None = None
  per_epoch: "PerEpoch | None" = None
  extra_batch: dict = dataclasses.field(default_factory=dict)
  encoder_input: Callable | None = None
  players: tuple = ()


@dataclasses.dataclass(frozen=True)
class Player:
  """One player of a multi-player method: the step runs `model(inputs, train=True, player=name)` and descends
  `loss` on the parameter subtree `params[subtree]` alone, with its own optimizer (`config.optimizer`; its
  schedule counts steps, not updates), `updates` times in a row. With k > 1 updates, update i reads the rows i, i + k,
  i + 2k, ... of the batch (k disjoint parts, each laid out across the devices as the batch is), so every update
  sees fresh data, as the k discriminator steps of Goodfellow et al.'s Algorithm 1.

  Attributes:
    name: names its metrics ("<name>/loss") and its optimizer state.
    subtree: the top-level parameter subtree it updates (e.g. "generator"); the others are constants to it.
    loss: (outputs, batch, step) -> (scalar loss, dict of scalar metrics), as `Method.loss`.
    updates: consecutive updates per step.
  """

  name: str
  subtree: str
  loss: Callable
  updates: int = 1


@dataclasses.dataclass(frozen=True)
class PerEpoch:
  """What `ssljax.experiment.train` runs around the shared step at each epoch (a method whose labels come from
  the whole training set, DeepCluster):

  Attributes:
    start: (params, model_state, features [N, F] of every training example from the encoder in inference mode,
      epoch, key) -> (params, model_state); run before the epoch's first step unless the state already holds
      that epoch (a resume mid-epoch), its key folded from the state's rng and the epoch.
    started_epoch: model_state -> the epoch whose start the state holds (-1: none).
    order: (model_state, epoch, seed, num_samples) -> the epoch's example indices [num_samples], consumed a
      global batch per step.
    period_epochs: the length of one such "epoch" in passes over the training set (DeepCluster's `--reassign`:
      on a small dataset a pass is a few steps, too few to train a freshly initialised classifier).
  """

  start: Callable
  started_epoch: Callable
  order: Callable
  period_epochs: float = 1.0


def cosine_momentum(base: float, final: float, num_steps: int) -> Callable:
  """BYOL's teacher momentum tau(k) = final - (final - base) (cos(pi k / K) + 1) / 2 over K steps, per step (also
  MoCo v3's and DINO's `cosine_scheduler` with one value per iteration)."""

  def tau(step):
    progress = jnp.minimum(step, num_steps) / max(num_steps, 1)
    return final - (final - base) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0

  return tau


def freeze_paths(params, names, frozen) -> Any:
  """A `Method.frozen` tree: `frozen` (a bool scalar) on every parameter whose path contains one of `names`."""

  def leaf(path, _):
    keys = {str(getattr(k, "key", k)) for k in path}
    return frozen if keys & set(names) else jnp.array(False)

  return jax.tree_util.tree_map_with_path(leaf, params)


def encode_crops(encoder: nn.Module, crops: dict, train: bool):
  """Multi-crop's encoder pass, once per resolution (BatchNorm statistics per resolution, as DINO's
  MultiCropWrapper and SwAV's `forward`): ({"global": [2N, ...], "local": [VN, ...]}) -> (global crops' features
  [2N, F], every crop's features [(2 + V) N, F], crop-major)."""
  features = encoder(crops["global"], train=train)
  if "local" not in crops:
    return features, features
  return features, jnp.concatenate([features, encoder(crops["local"], train=train)])


def check_crops_for_assign(assign: tuple, num_crops: int, key: str):
  """SwAV's and DeepCluster-v2's assignment crops: distinct indices among the `num_crops` crops."""
  if not assign or any(not 0 <= c < num_crops for c in assign) or len(set(assign)) != len(assign):
    raise ConfigError(f"{key}: {assign} must be distinct crops among the {num_crops}")


ENCODER_TRAINING_EVALUATORS = ("linear_eval", "finetune", "lora_finetune", "self_training")


def refuse_encoder_training(config, why: str):
  """A ConfigError naming the first entry of config.evals that trains `config.model` on images (the supervised step
  of fine-tuning, linear evaluation on augmented inputs), for a method whose encoder is not that: `why`."""
  for name, evaluator in config.get("evals", {}).items():
    if evaluator.type in ENCODER_TRAINING_EVALUATORS:
      raise ConfigError(
        f"config.evals.{name}: {evaluator.type} trains the encoder on images as config.model builds it; {why} (its"
        " features: linear_probe, knn, fewshot, embedding_plot)"
      )


def check_divisible(value: int, by: int, key: str, what: str):
  if value % by:
    raise ConfigError(f"{key}: {value} is not a multiple of {what} {by}")


def registry() -> dict:
  """{name: build(config, info) -> Method}: every module of this package with a `build` function, by its name."""
  builders = {}
  for module_info in pkgutil.iter_modules(__path__):
    module = importlib.import_module(f"{__name__}.{module_info.name}")
    if hasattr(module, "build"):
      builders[module_info.name] = module.build
  return builders


def build_method(config, info: BuildInfo) -> Method:
  """The method of `config`."""
  builders = registry()
  return builders[require_choice(config.method, builders, "config.method")](config, info)
