"""LoRA (Hu et al. 2021): the adapters' formula, an adapted ViT that starts as the pretrained one, and a fine-tune
step that trains the adapters and the head only."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from configs import mae_digits
from ssljax import data, sharding, train_step
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


def test_a_lora_step_trains_the_adapters_and_the_head_only():
  pretrain = mae_digits.get_config("runlocal")
  config = finetune_config(pretrain, 128, pretrain.evals.finetune.to_dict())
  config.model.lora = dict(rank=4, alpha=8.0)
  config.optimizer.warmup_steps = 0  # Warm-up starts at lr 0: nothing would move in step 1.
  source = data.load_source(config.dataset, "train")
  trainer = train_step.build_trainer(config, sharding.make_mesh(), len(source), source.num_classes)
  state = trainer.make_state(0)
  before = jax.device_get(state.params)
  batch = data.global_batch(source.get(np.arange(config.batch_size)), trainer.batch_sharding)
  state, _ = trainer.step(state, batch)
  after = jax.device_get(state.params)
  frozen = jax.device_get(lora_frozen(before))
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), before, after)
  pairs = list(zip(jax.tree_util.tree_flatten_with_path(changed)[0], jax.tree.leaves(frozen), strict=True))
  assert all(not moved for (_, moved), is_frozen in pairs if is_frozen)
  moved = {"/".join(str(getattr(k, "key", k)) for k in path) for (path, m), is_frozen in pairs if m}
  assert any(p.endswith("fc1_lora/b") for p in moved) and any("head" in p for p in moved), sorted(moved)
