"""Every config loads, its trainer builds (abstractly, no compile), and the paper settings are what they say."""

import importlib
import json
import pathlib

import jax
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from configs import mae_vit_base_imagenet, simclr_cifar10, simclr_imagenet
from ssljax import augment, cli, config_checks, data, experiment, optim, text, train_step

CONFIGS = sorted(
  p.stem for p in (pathlib.Path(__file__).parent.parent / "configs").glob("*.py") if not p.stem.startswith("_")
)
VARIANTS = {
  "moco_v3_imagenet": ("vit_small",),
  "dino_imagenet": ("resnet50",),
  "swav_imagenet": ("bs256",),
  "simclr_cifar10": ("v2",),
  "mae_digits": ("lora",),
  "simclr_digits": ("self_training",),
  "autoencoder_digits": ("denoising", "vae", "beta_vae", "cvae"),
  "gan_digits": ("hinge",),
}


@pytest.mark.parametrize(
  ("name", "variant", "runlocal"),
  [(name, "", runlocal) for name in CONFIGS for runlocal in (False, True)]
  + [(name, variant, False) for name, variants in VARIANTS.items() for variant in variants],
)
def test_config_builds_a_trainer(name, variant, runlocal, mesh8):
  arg = ",".join(a for a in (variant, "runlocal" if runlocal else "") if a)
  config = importlib.import_module(f"configs.{name}").get_config(arg)
  config.batch_size = max(config.batch_size, 8)  # A batch-1 recipe (CycleGAN's) runs on one device, not 8.
  config_checks.validate(config)
  counts = None
  if data.is_text(config.dataset):  # Text methods sample by the words' counts (word2vec's noise).
    counts = np.ones(text.vocab_size(text.load_tokenizer(config.text.tokenizer)), np.int64)
  trainer = train_step.build_trainer(config, mesh8, num_examples=50_000, num_classes=10, token_counts=counts)
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
  assert (config.batch_size, config.epochs, optim.warmup_steps(opt, 1_281_167 / 4096)) == (4096, 800, 12511)


def test_new_methods_imagenet_configs_match_their_papers():
  from configs import byol_imagenet, dino_imagenet, moco_v2_imagenet, moco_v3_imagenet, simsiam_imagenet

  byol = byol_imagenet.get_config()
  assert (byol.batch_size, byol.byol.momentum, byol.byol.hidden_dim, byol.byol.proj_dim) == (4096, 0.996, 4096, 256)
  assert (byol.views.view1.blur_prob, byol.views.view2.blur_prob, byol.views.view2.solarize_prob) == (1.0, 0.1, 0.2)
  assert byol.augment.jitter == (0.4, 0.4, 0.2, 0.1)
  views, _, _ = augment.view_configs(byol)  # DeepMind's augmentations.py colour operations and blur padding.
  assert all((v.jitter_brightness, v.jitter_saturation, v.blur_padding) == ("add", "hsv", "zero") for v in views)
  moco = moco_v2_imagenet.get_config()
  assert (moco.augment.jitter_brightness, moco.augment.jitter_saturation) == ("multiply", "blend")  # torchvision.
  assert (moco.moco_v2.queue_size, moco.moco_v2.momentum, moco.moco_v2.temperature, moco.epochs) == (
    65536,
    0.999,
    0.2,
    200,
  )
  assert optim.scaled_learning_rate(moco.optimizer.base_lr, moco.batch_size, "linear") == 0.03
  vit = moco_v3_imagenet.get_config("vit_small")
  assert (vit.model.variant, vit.moco_v3.temperature, vit.moco_v3.freeze_patch_embed, vit.moco_v3.proj_layers) == (
    "S",
    0.2,
    True,
    3,
  )
  simsiam = simsiam_imagenet.get_config()
  assert (simsiam.batch_size, simsiam.optimizer.weight_decay, simsiam.simsiam.fix_predictor_lr) == (512, 1e-4, True)
  dino = dino_imagenet.get_config()
  assert (dino.dino.out_dim, dino.dino.warmup_teacher_temperature, dino.dino.teacher_temperature) == (65536, 0.04, 0.07)
  assert (dino.multicrop.num_local, dino.multicrop.local_size, dino.dino.warmup_teacher_temperature_epochs) == (
    10,
    96,
    30,
  )


def test_redundancy_reduction_and_clustering_imagenet_configs_match_their_papers():
  from configs import barlow_twins_imagenet, swav_imagenet, vicreg_imagenet

  bt = barlow_twins_imagenet.get_config()
  assert (bt.batch_size, bt.epochs, bt.barlow_twins.proj_dim, bt.barlow_twins.proj_layers) == (2048, 1000, 8192, 3)
  opt = bt.optimizer
  assert (opt.name, opt.base_lr, opt.norm_and_bias_base_lr, opt.weight_decay, opt.end_lr_ratio) == (
    "lars",
    0.2,
    0.0048,
    1.5e-6,
    0.001,
  )
  assert (bt.barlow_twins.lambda_, opt.warmup_epochs, opt.lr_after_momentum, bt.model.zero_init_residual) == (
    0.0051,
    10,
    True,
    True,
  )
  vicreg = vicreg_imagenet.get_config()
  section = vicreg.vicreg
  assert (section.sim_coeff, section.std_coeff, section.cov_coeff, section.proj_dim) == (25.0, 25.0, 1.0, 8192)
  assert (vicreg.optimizer.base_lr, vicreg.optimizer.weight_decay, vicreg.batch_size) == (0.2, 1e-6, 2048)
  assert vicreg.optimizer.get("norm_and_bias_base_lr") is None
  swav = swav_imagenet.get_config()
  assert (swav.swav.num_prototypes, swav.swav.freeze_prototypes_steps, swav.swav.queue_length) == (3000, 313, 0)
  assert (swav.multicrop.num_local, swav.multicrop.local_size, swav.multicrop.crop_scale) == (6, 96, (0.05, 0.14))
  assert optim.scaled_learning_rate(swav.optimizer.base_lr, swav.batch_size, "linear") == 4.8
  small = swav_imagenet.get_config("bs256")
  assert (small.batch_size, small.swav.queue_length, small.swav.epoch_queue_starts) == (256, 3840, 15)
  assert (small.swav.freeze_prototypes_steps, small.optimizer.base_lr, small.optimizer.warmup_epochs) == (5005, 0.6, 0)


def test_simclr_cifar10_is_google_research_simclr_s_command():
  """v1: the SimCLR paper's appendix B.9 / the v1 README; v2: the current README (weight decay 1e-4) with the v2
  code's default 3-layer projection head."""
  for arg, weight_decay, layers in (("", 1e-6, 2), ("v2", 1e-4, 3)):
    config = simclr_cifar10.get_config(arg)
    optimizer = config.optimizer
    assert (optimizer.name, optimizer.base_lr, optimizer.weight_decay) == ("lars", 1.0, weight_decay)
    assert (config.batch_size, config.epochs, config.simclr.temperature) == (512, 1000, 0.5)
    assert (config.simclr.proj_layers, config.simclr.proj_dim) == (layers, 128)
    assert (config.augment.jitter_strength, config.augment.blur_prob) == (0.5, 0.0)


@pytest.mark.parametrize("name", CONFIGS)
def test_data_dir_can_be_set_on_the_command_line(name, tmp_path, monkeypatch):
  """Every shipped config takes `--config.dataset.data_dir=PATH` (a plain None in a config rejects any override),
  and so does a saved run's config.json (JSON null) under `ssljax.evaluate`; every image config takes
  `--config.dataset.worker_processes=N`."""
  monkeypatch.chdir(pathlib.Path(__file__).parent.parent)
  images = not data.is_text(importlib.import_module(f"configs.{name}").get_config().dataset)
  workers = ["--config.dataset.worker_processes=2"] if images else []
  argv = ["train", f"--config=configs/{name}.py", "--config.dataset.data_dir=/data/tfds", *workers]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=values, sys_argv=argv)
  cli.parse_flags(argv, values)
  assert values.config.dataset.data_dir == "/data/tfds"
  assert values.config.dataset.get("worker_processes") == (2 if images else None)
  saved = importlib.import_module(f"configs.{name}").get_config().to_dict()
  saved["batch_size"] = max(saved["batch_size"], 8)  # A batch-1 recipe runs on one device, these tests see 8.
  (tmp_path / "config.json").write_text(json.dumps(saved))
  argv = ["evaluate", "--config.dataset.data_dir=/data/tfds"]
  values = flags.FlagValues()
  config_flags.DEFINE_config_dict("config", experiment.load_config(str(tmp_path)), flag_values=values, sys_argv=argv)
  cli.parse_flags(argv, values)
  assert values.config.dataset.data_dir == "/data/tfds"


# Settings whose absence has a meaning no value can stand for (a dict derived from another key).
DERIVED_WHEN_ABSENT = {("finetune", "scratch_optimizer")}


@pytest.mark.parametrize(
  ("name", "arg"),
  [(name, "") for name in CONFIGS] + [(name, variant) for name, variants in VARIANTS.items() for variant in variants],
)
def test_every_evaluator_setting_is_in_the_shipped_config(name, arg):
  """Every key an evaluator reads is spelled out in the shipped configs (the code's defaults never apply to
  them silently), so that `--config.evals.NAME.KEY=...` can change any of them."""
  config = importlib.import_module(f"configs.{name}").get_config(arg)
  for entry_name, entry in config.evals.items():
    schema = config_checks.EVALUATOR.choices[entry.type]
    missing = sorted(k for k in schema if k not in entry and (entry.type, k) not in DERIVED_WHEN_ABSENT)
    assert not missing, f"config.evals.{entry_name} ({entry.type}) leaves {missing} to the code's defaults"
  assert "skip_bad_files" in config.dataset or data.is_text(config.dataset)  # Text is read whole, never skipped.


@pytest.mark.parametrize("evaluator", sorted(config_checks.EVALUATOR.choices))
def test_the_schema_names_every_setting_an_evaluator_takes(evaluator):
  """The settings an evaluator's `run` takes by name are keys of its schema (so validation knows them)."""
  import inspect

  from ssljax import evaluators

  run = evaluators.registry()[evaluator]
  named = [p.name for p in inspect.signature(run).parameters.values() if p.kind == p.POSITIONAL_OR_KEYWORD][1:]
  assert set(named) <= set(config_checks.EVALUATOR.choices[evaluator]), evaluator


def test_image_text_configs_match_their_papers():
  from configs import clip_vit_base, siglip_vit_base

  clip = clip_vit_base.get_config()
  assert (clip.model.variant, clip.model.patch_size, clip.dataset.image_size, clip.batch_size) == ("B", 16, 224, 32768)
  assert (clip.text.width, clip.text.depth, clip.text.num_heads, clip.text.context_length) == (512, 12, 8, 77)
  assert clip.text.causal and clip.clip.embed_dim == 512 and clip.clip.init_temperature == 0.07
  opt = clip.optimizer
  assert (opt.name, opt.base_lr, opt.b1, opt.b2, opt.eps, opt.weight_decay, opt.warmup_steps) == (
    "adamw",
    5e-4,
    0.9,
    0.98,
    1e-6,
    0.2,
    2000,
  )
  siglip = siglip_vit_base.get_config()
  assert (siglip.siglip.init_temperature, siglip.siglip.init_bias, siglip.text.causal) == (10.0, -10.0, False)
  assert (siglip.optimizer.base_lr, siglip.optimizer.b2, siglip.batch_size) == (1e-3, 0.95, 32768)


def test_text_configs_match_their_papers():
  from configs import bert_base_lm1b, gpt2_small_lm1b, word2vec_python_docs

  gpt = gpt2_small_lm1b.get_config()
  assert (gpt.text.width, gpt.text.depth, gpt.text.num_heads, gpt.text.context_length) == (768, 12, 12, 1024)
  assert gpt.batch_size * gpt.text.context_length == 2**19  # GPT-3 small's 0.5M tokens per step.
  opt = gpt.optimizer
  assert (opt.name, opt.base_lr, opt.b1, opt.b2, opt.weight_decay, opt.end_lr_ratio) == (
    "adamw",
    6e-4,
    0.9,
    0.95,
    0.1,
    0.1,
  )
  bert = bert_base_lm1b.get_config()
  assert (bert.text.width, bert.text.depth, bert.text.context_length, bert.text.causal) == (768, 12, 512, False)
  assert (bert.bert.mask_rate, bert.bert.mask_token_rate, bert.bert.random_token_rate) == (0.15, 0.8, 0.1)
  opt = bert.optimizer
  assert (opt.base_lr, opt.b2, opt.weight_decay, opt.warmup_steps, bert.batch_size) == (1e-4, 0.999, 0.01, 10_000, 256)
  word2vec = word2vec_python_docs.get_config().word2vec  # word2vec.c's skip-gram defaults.
  assert (word2vec.dim, word2vec.window, word2vec.negatives, word2vec.subsample, word2vec.noise_power) == (
    100,
    5,
    5,
    1e-3,
    0.75,
  )
