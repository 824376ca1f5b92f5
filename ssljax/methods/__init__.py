"""Self-supervised methods. A method is one small module with `build(config) -> Method`; all of them are
trained by the one step in `ssljax.train_step`."""

import dataclasses
from collections.abc import Callable

import flax.linen as nn

from ssljax.config import require_choice


@dataclasses.dataclass(frozen=True)
class Method:
  """What the shared train step needs to know about a method.

  Attributes:
    model: Flax module with a submodule attribute `encoder` (the trunk that evaluation and fine-tuning reuse,
      so its parameters live under "encoder"); `model(inputs, train=...)` returns a dict with at least
      "features" (the representation that the online probe reads) and whatever `loss` needs;
      `model.encode(images)` returns the features of un-augmented images in inference mode. It may draw from the
      rng streams "dropout" and "masking".
    make_inputs: (images [N, H, W, C] in [0, 1], rng) -> model inputs, e.g. augmented views; runs inside jit.
    loss: (model outputs, batch) -> (scalar loss, dict of scalar metrics); the batch carries the labels.
    views_per_image: how many rows of "features" each input image contributes (the probe tiles labels so).
  """

  model: nn.Module
  make_inputs: Callable
  loss: Callable
  views_per_image: int


def registry() -> dict:
  """{name: build(config, num_classes, mesh) -> Method}."""
  from ssljax.methods import mae, simclr, supervised

  return {"simclr": simclr.build, "mae": mae.build, "supervised": supervised.build}


def build_method(config, num_classes: int, mesh=None) -> Method:
  """The method of `config`; `mesh` (the one the train step runs on) lets a loss place its own collectives."""
  builders = registry()
  return builders[require_choice(config.method, builders, "config.method")](config, num_classes, mesh)
