"""Every config loads, its trainer builds (abstractly, no compile), and the paper settings are what they say."""

import jax
import pytest

from configs import simclr_cifar10, simclr_digits, simclr_imagenet
from ssljax import optim, train


@pytest.mark.parametrize("module", [simclr_digits, simclr_cifar10, simclr_imagenet])
@pytest.mark.parametrize("arg", ["", "runlocal"])
def test_config_builds_a_trainer(module, arg, mesh8):
  config = module.get_config(arg)
  trainer = train.build_trainer(config, mesh8, num_examples=50_000, num_classes=10)
  shapes = jax.eval_shape(trainer.make_state, 0)
  assert int(jax.tree.leaves(shapes.params)[0].size) > 0 and trainer.num_steps > 0


def test_imagenet_config_matches_the_paper():
  config = simclr_imagenet.get_config()
  assert (config.batch_size, config.epochs, config.simclr.temperature, config.model.depth) == (4096, 100, 0.1, 50)
  assert optim.scaled_learning_rate(config.optimizer.base_lr, config.batch_size, config.optimizer.lr_scaling) == 4.8
