"""LoRA (Hu et al. 2021): the adapters' formula, an adapted ViT that starts as the pretrained one, and a fine-tune
step that trains the adapters and the head only."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from configs import mae_digits
from ssljax import sharding, train_step
from ssljax.evaluators import lora_finetune
from ssljax.evaluators.finetune import finetune_config
from ssljax.methods.supervised import Classifier, lora_frozen
from ssljax.models import ViT
from ssljax.models.vit import LoRA


def test_adapter_is_alpha_over_rank_x_a_b_over_the_input_axes():
  x = jax.random.normal(jax.random.key(0), (2, 5, 3, 4))  # Two input axes (heads, head_dim), as `proj`.
  module = LoRA(out_shape=(6,), num_in_axes=2, rank=2, alpha=3.0)
  params = module.init(jax.random.key(1), x)["params"]
  assert params["a"].shape == (12, 2) and not np.any(params["b"])  # B = 0: the layer starts unchanged.
  assert np.abs(params["a"]).max() <= 1 / np.sqrt(12)
  params = {**params, "b": jax.random.normal(jax.random.key(2), (2, 6))}
  expected = 1.5 * x.reshape(2, 5, 12) @ params["a"] @ params["b"]
  np.testing.assert_allclose(module.apply({"params": params}, x), expected, rtol=1e-5, atol=1e-6)


def test_adapted_vit_starts_as_the_pretrained_one_and_trains_a_small_fraction():
  """ViT-B/16 with rank-8 adapters on qkv, proj, fc1 and fc2 of its 12 blocks: 12 x 8 x (768 + 2304 + 1536 +
  768 + 3072 + 3072 + 768) = 1,179,648 adapter parameters, plus a 1000-class head (769,000): 2.2% of the model."""
  images = jnp.zeros((1, 224, 224, 3))
  model = Classifier(ViT(16, 768, 12, 12, pool="mean", lora=(8, 16.0)), 1000)
  params = jax.eval_shape(lambda: nn.meta.unbox(model.init(jax.random.key(0), images))["params"])
  leaves = zip(jax.tree.leaves(params), jax.tree.leaves(lora_frozen(params)), strict=True)
  sizes = [(x.size, bool(frozen)) for x, frozen in leaves]
  trained, total = sum(s for s, f in sizes if not f), sum(s for s, _ in sizes)
  assert trained == 12 * 8 * (768 + 2304 + 1536 + 768 + 3072 + 3072 + 768) + 769_000
  assert 0.02 < trained / total < 0.025
  small = jax.random.uniform(jax.random.key(1), (2, 16, 16, 1))
  plain, adapted = ViT(4, 32, 2, 4), ViT(4, 32, 2, 4, lora=(4, 8.0))
  variables = nn.meta.unbox(adapted.init(jax.random.key(2), small))
  base = {"params": _without_lora(variables["params"])}
  np.testing.assert_allclose(adapted.apply(variables, small), plain.apply(base, small), rtol=1e-5, atol=1e-6)


def _without_lora(tree):
  return {k: _without_lora(v) if isinstance(v, dict) else v for k, v in tree.items() if not k.endswith("_lora")}


def test_lora_fine_tuning_freezes_all_but_adapters_and_head():
  """The fine-tune config with `model.lora` builds a supervised method whose frozen map (whose updates the shared
  step zeroes after the optimizer: tested for DINO's last layer) leaves only adapters and head trainable."""
  pretrain = mae_digits.get_config("runlocal,lora")
  config = finetune_config(pretrain, 128, pretrain.evals.finetune.to_dict())
  config.model.lora = dict(rank=4, alpha=8.0)
  trainer = train_step.build_trainer(config, sharding.make_mesh(), 128, 10)
  params = jax.eval_shape(trainer.make_state, 0).params
  frozen = trainer.method.frozen(params, 0)
  trainable = {
    "/".join(str(getattr(k, "key", k)) for k in path)
    for path, f in jax.tree_util.tree_flatten_with_path(frozen)[0]
    if not bool(f)
  }
  assert trainable and all("_lora/" in p or p.startswith("head/") or "/head/" in p for p in trainable), trainable
  assert any(p.endswith("blocks_0/fc2_lora/b") for p in trainable) and any("head/kernel" in p for p in trainable)
  # Width 128, MLP 512, 4 blocks, rank 4: 4 x 4 x (128 + 384 + 128 + 128 + 128 + 512 + 512 + 128), a 10-way head.
  trained, total = lora_finetune.parameter_counts(config, sharding.make_mesh(), 128, 10)
  assert trained == 4 * 4 * 2048 + 128 * 10 + 10 and total > 20 * trained
