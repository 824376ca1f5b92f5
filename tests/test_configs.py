"""Every config loads, its trainer builds (abstractly, no compile), and the paper settings are what they say."""

import jax
import pytest

from configs import mae_cifar10, mae_digits, mae_vit_base_imagenet, simclr_cifar10, simclr_digits, simclr_imagenet
from ssljax import optim, train_step


@pytest.mark.parametrize(
  "module", [simclr_digits, simclr_cifar10, simclr_imagenet, mae_digits, mae_cifar10, mae_vit_base_imagenet]
)
@pytest.mark.parametrize("arg", ["", "runlocal"])
def test_config_builds_a_trainer(module, arg, mesh8):
  config = module.get_config(arg)
  trainer = train_step.build_trainer(config, mesh8, num_examples=50_000, num_classes=10)
  shapes = jax.eval_shape(trainer.make_state, 0)
  assert int(jax.tree.leaves(shapes.params)[0].size) > 0 and trainer.num_steps > 0


def test_imagenet_config_matches_the_paper():
  config = simclr_imagenet.get_config()
  assert (config.batch_size, config.epochs, config.simclr.temperature, config.model.depth) == (4096, 100, 0.1, 50)
  assert optim.scaled_learning_rate(config.optimizer.base_lr, config.batch_size, config.optimizer.lr_scaling) == 4.8


def test_mae_imagenet_config_matches_the_paper():
  config = mae_vit_base_imagenet.get_config()
  assert (config.model.variant, config.model.patch_size, config.mae.mask_ratio) == ("B", 16, 0.75)
  assert (config.mae.decoder_depth, config.mae.decoder_width, config.mae.norm_pix) == (8, 512, True)
  opt = config.optimizer
  assert (opt.name, opt.b1, opt.b2, opt.weight_decay) == ("adamw", 0.9, 0.95, 0.05)
  assert optim.scaled_learning_rate(opt.base_lr, config.batch_size, opt.lr_scaling) == 1.5e-4 * 16
  assert (config.batch_size, config.epochs, opt.warmup_steps) == (4096, 800, 12511)  # 40 epochs.
