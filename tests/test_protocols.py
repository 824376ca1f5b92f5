"""The papers' linear evaluation (a head on a frozen encoder, MAE's BatchNorm before it) and self-training with data
distillation: the classifier's formulas, what is frozen, the pseudo-labels, and which runs the evaluators make."""

import importlib
import re
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import simclr_digits
from ssljax import config_checks, data, experiment, sharding, train_step
from ssljax.config import ConfigError
from ssljax.evaluators import finetune, linear_eval, self_training
from ssljax.evaluators.label_budgets import budget_subset
from ssljax.methods.supervised import Classifier, head_only_frozen
from ssljax.models import ResNet


class _Context:
  """What the evaluators read from an EvalContext, with 40 labelled 8 px images."""

  def __init__(self, config):
    self.labels = np.arange(40) % 10
    self.config, self.mesh, self.test_source = config, None, "test"
    self.train_source = data.ArraySource(np.zeros((40, 8, 8, 1), np.float32), self.labels, 10)
    self.variables = {"params": {"encoder": {"w": jnp.ones(1)}}}
    self.encoders = {"ssl": lambda: {"params": "ssl"}, "random_init": lambda: {"params": "random"}}

  def features(self):
    return None, self.labels, None


def test_frozen_encoder_classifier_gets_no_gradient_and_keeps_its_statistics():
  images = jax.random.uniform(jax.random.key(0), (6, 8, 8, 1))
  model = Classifier(ResNet(18, 0.125, small_stem=True), 10, head_init_std=0.0, frozen_encoder=True)
  variables = nn.meta.unbox(model.init(jax.random.key(1), images))
  assert not np.any(variables["params"]["head"]["kernel"])  # SimCLR's zero_init_logits_layer.

  def loss(params):
    outputs, new_stats = model.apply({**variables, "params": params}, images, train=True, mutable=["batch_stats"])
    return jnp.sum(outputs["logits"] * jnp.arange(10)), (outputs, new_stats)

  grads, (outputs, new_stats) = jax.grad(loss, has_aux=True)(variables["params"])
  assert all(not np.any(g) for g in jax.tree.leaves(grads["encoder"]))
  assert np.any(grads["head"]["kernel"])
  jax.tree.map(np.testing.assert_array_equal, new_stats["batch_stats"], variables["batch_stats"])
  inference = model.encoder.apply({k: v["encoder"] for k, v in variables.items()}, images, train=False)
  np.testing.assert_allclose(outputs["features"], inference, rtol=1e-6)
  frozen = head_only_frozen(variables["params"])
  assert not frozen["head"]["kernel"] and all(jax.tree.leaves(frozen["encoder"]))


def test_mae_head_norm_is_batchnorm_without_affine_parameters():
  """MAE's linear probe: (f - batch mean) / sqrt(batch variance + 1e-6) in training, running statistics with
  momentum 0.9 (torch's 0.1), no scale or offset parameter; then the head (normal, std 0.01)."""
  features = jax.random.normal(jax.random.key(0), (16, 12)) * 3.0 + 2.0

  class Identity(nn.Module):
    @nn.compact
    def __call__(self, x, train=True):
      return x

  model = Classifier(Identity(), 5, head_init_std=0.01, head_norm=True, frozen_encoder=True)
  variables = nn.meta.unbox(model.init(jax.random.key(1), features))
  assert set(variables["params"]) == {"head"}  # The norm has no parameters.
  kernel = np.asarray(variables["params"]["head"]["kernel"])
  assert 0.007 < kernel.std() < 0.013  # N(0, 0.01^2), as torch's trunc_normal_(std=0.01) (cut at +-2, not +-2 std).
  outputs, stats = model.apply(variables, features, train=True, mutable=["batch_stats"])
  x = np.asarray(features, np.float64)
  normalised = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-6)
  np.testing.assert_allclose(outputs["logits"], normalised @ kernel, rtol=1e-4, atol=1e-5)
  running = stats["batch_stats"]["BatchNorm_0"]
  np.testing.assert_allclose(running["mean"], 0.1 * x.mean(0), rtol=1e-5)
  np.testing.assert_allclose(running["var"], 0.9 + 0.1 * x.var(0), rtol=1e-5)


def test_paper_protocols_are_the_papers_recipes_and_validate():
  simclr = linear_eval.paper_protocol("simclr", batch_size=4096)
  assert simclr["optimizer"] == dict(
    name="sgd", base_lr=0.1, lr_scaling="linear", weight_decay=0.0, momentum=0.9, nesterov=True
  )
  assert (simclr["epochs"], simclr["warmup_epochs"], simclr["head_init_std"], simclr["head_norm"]) == (
    90,
    0,
    0.0,
    False,
  )
  assert simclr["augment"]["crop_scale"] == (0.08, 1.0) and simclr["augment"]["flip_prob"] == 0.5
  assert simclr["augment"]["jitter_prob"] == simclr["augment"]["blur_prob"] == 0.0
  mae = linear_eval.paper_protocol("mae", batch_size=16384)
  assert mae["optimizer"].get("trust_coefficient", 0.001) == 0.001  # MAE's LARS (util/lars.py) default.
  assert (mae["optimizer"]["name"], mae["warmup_epochs"], mae["head_norm"], mae["head_init_std"]) == (
    "lars",
    10,
    True,
    0.01,
  )
  config = simclr_digits.get_config()
  config.evals.mae_probe = mae
  config_checks.validate(config)
  config.evals.mae_probe.protocol = "pirl"
  with pytest.raises(ConfigError, match=r"config.evals.mae_probe.protocol: unknown"):
    config_checks.validate(config)


# Each paper's linear protocol as its reference code sets it: (epochs, batch, optimizer, base lr, lr x B/256,
# schedule, nesterov, head init, weight decay).
REFERENCE_PROTOCOLS = {
  "moco_v2": (100, 256, "sgd", 30.0, False, "steps", False, 0.01, 0.0),  # moco main_lincls.py; steps at 60, 80.
  "moco_v3": (90, 1024, "sgd", 0.1, True, "cosine", False, 0.01, 0.0),  # moco-v3 main_lincls.py.
  "moco_v3_vit": (90, 1024, "sgd", 3.0, True, "cosine", False, 0.01, 0.0),  # moco-v3 CONFIG.md `--lr=3`.
  "simsiam": (90, 4096, "lars", 0.1, True, "cosine", False, 0.01, 0.0),  # simsiam main_lincls.py --lars (apex LARC).
  "byol": (80, 4096, "sgd", 0.2, True, "cosine", True, "fan_in", 0.0),  # byol configs/eval.py; Haiku's Linear init.
  "dino": (100, 1024, "sgd", 0.001, True, "cosine", False, 0.01, 0.0),  # dino eval_linear.py, 128 x 8 GPUs.
  "barlow_twins": (100, 256, "sgd", 0.3, True, "cosine", False, 0.01, 1e-6),  # barlowtwins evaluate.py.
  "vicreg": (100, 256, "sgd", 0.3, True, "cosine", False, 0.01, 1e-6),  # vicreg evaluate.py.
  "swav": (100, 256, "sgd", 0.3, True, "cosine", False, 0.01, 1e-6),  # swav eval_linear.py, 32 x 8 GPUs.
  "deepcluster_v2": (100, 256, "sgd", 0.3, True, "cosine", False, 0.01, 1e-6),  # The same eval_linear.py.
}


@pytest.mark.parametrize("protocol", sorted(REFERENCE_PROTOCOLS))
def test_each_papers_linear_protocol_equals_its_reference(protocol):
  epochs, batch, name, base_lr, scaled, schedule, nesterov, head_init, decay = REFERENCE_PROTOCOLS[protocol]
  entry = linear_eval.paper_protocol(protocol)
  opt = entry["optimizer"]
  assert (entry["epochs"], entry["batch_size"], opt["name"], opt["base_lr"]) == (epochs, batch, name, base_lr)
  assert opt["lr_scaling"] == ("linear" if scaled else "none") and opt.get("schedule", "cosine") == schedule
  assert (entry["warmup_epochs"], opt["weight_decay"], opt["momentum"], entry["head_norm"]) == (0, decay, 0.9, False)
  assert opt.get("nesterov", False) == nesterov and entry["head_init_std"] == head_init
  assert entry["augment"]["crop_scale"] == (0.08, 1.0) and entry["augment"]["flip_prob"] == 0.5
  if protocol == "moco_v2":
    assert opt["decay_epochs"] == (60, 80)
  if name == "lars":  # apex's LARC adapts every parameter (the bias too) and applies the lr after momentum.
    assert opt["decay_norm_and_bias"] and opt["lr_after_momentum"] and opt.get("trust_coefficient", 0.001) == 0.001
  config = simclr_digits.get_config()
  config.evals = {"paper": entry}
  config_checks.validate(config)
  if head_init == "fan_in":
    config.evals.paper.head_init_std = "lecun"
    with pytest.raises(ConfigError, match=r"config.evals.paper.head_init_std: unknown value 'lecun'"):
      config_checks.validate(config)


@pytest.mark.parametrize(
  ("module", "arg", "protocol"),
  [
    ("simclr_imagenet", "", "simclr"),
    ("moco_v2_imagenet", "", "moco_v2"),
    ("simsiam_imagenet", "", "simsiam"),
    ("byol_imagenet", "", "byol"),
    ("moco_v3_imagenet", "", "moco_v3"),
    ("moco_v3_imagenet", "vit_small", "moco_v3_vit"),
    ("dino_imagenet", "", "dino"),
    ("dino_imagenet", "resnet50", "dino"),
    ("barlow_twins_imagenet", "", "barlow_twins"),
    ("vicreg_imagenet", "", "vicreg"),
    ("swav_imagenet", "", "swav"),
    ("deepcluster_v2_imagenet", "", "deepcluster_v2"),
  ],
)
def test_every_imagenet_config_quotes_its_number_next_to_a_protocol_it_runs(module, arg, protocol):
  config_module = importlib.import_module(f"configs.{module}")
  config = config_module.get_config(arg)
  key = f"linear_{protocol}"
  assert (
    config.evals[key].protocol == protocol and config.evals[key].batch_size == linear_eval.PAPER_BATCH_SIZES[protocol]
  )
  assert f"`{key}/ssl/all`" in config_module.__doc__.replace("\n", " ")
  if module == "dino_imagenet":  # ViT-S/16: the class tokens of the last 4 blocks; ResNet-50: its pooled features.
    assert config.evals[key].model.cls_blocks == (1 if arg else 4)
    settings = {k: v for k, v in config.evals[key].items() if k not in ("type", "protocol")}
    assert linear_eval.linear_eval_config(config, 50_000, settings).model.get("cls_blocks", 1) == (1 if arg else 4)
    assert config.evals.knn.ks == (20,) and config.evals.knn.temperature == 0.07


def test_linear_eval_trains_one_head_per_encoder_on_a_frozen_encoder(monkeypatch):
  """Each encoder ("ssl", the fair random network) gets a head under the same compiled step; the run is the
  protocol's: encoder frozen, SGD at 0.1 x B/256, crops without colour."""
  config = simclr_digits.get_config()
  runs, built = [], []
  monkeypatch.setattr(linear_eval, "build_trainer", lambda c, *args: built.append(c) or "trainer")

  def train(c, m, init, source, seed, trainer, label):
    runs.append((c, init, label, trainer))
    return 0, 0

  monkeypatch.setattr(finetune, "train_classifier", train)
  monkeypatch.setattr(finetune, "test_accuracy", lambda *args: 0.5)
  settings = {k: v for k, v in config.evals.linear_simclr.items() if k != "type"}
  results = linear_eval.run(_Context(config), **settings)
  assert results == {"linear_simclr/ssl/all": 0.5, "linear_simclr/random_init/all": 0.5}
  assert [(init, label) for _, init, label, _ in runs] == [
    ({"params": "ssl"}, "linear_simclr/ssl/all"),
    ({"params": "random"}, "linear_simclr/random_init/all"),
  ]
  assert len(built) == 1 and all(trainer == "trainer" for *_, trainer in runs)
  run_config = built[0]
  assert run_config.supervised.frozen_encoder and run_config.supervised.head_init_std == 0.0
  assert (run_config.optimizer.name, run_config.batch_size, run_config.augment.jitter_prob) == ("sgd", 40, 0.0)
  with pytest.raises(ConfigError, match="raw_pixels"):
    linear_eval.run(_Context(config), **{**settings, "baselines": ("raw_pixels",)})
  config.eval_baselines = ()  # The run's one switch for baselines: the random network gets no head either.
  assert linear_eval.run(_Context(config), **settings) == {"linear_simclr/ssl/all": 0.5}


def test_linear_eval_step_moves_only_the_head(capsys):
  """Training moves the head alone, behind a progress bar named by the result it computes (steps and ETA)."""
  config = simclr_digits.get_config("runlocal")
  settings = {k: v for k, v in config.evals.linear_simclr.items() if k not in ("type", "protocol")}
  run_config = linear_eval.linear_eval_config(config, 64, settings)
  mesh = sharding.make_mesh()
  trainer = train_step.build_trainer(run_config, mesh, 64, 10)
  state = trainer.make_state(0)
  frozen = trainer.method.frozen(state.params, 0)
  assert all(jax.tree.leaves(frozen["encoder"])) and not any(jax.tree.leaves(frozen["head"]))
  source = data.ArraySource(jax.random.uniform(jax.random.key(0), (64, 8, 8, 1)), np.arange(64) % 10, 10)
  _, trained = finetune.train_classifier(run_config, mesh, None, source, 0, trainer, "linear_simclr/ssl/all")
  jax.tree.map(np.testing.assert_array_equal, trained["params"]["encoder"], state.params["encoder"])
  assert not np.allclose(trained["params"]["head"]["kernel"], state.params["head"]["kernel"])
  assert re.search(rf"linear_simclr/ssl/all: +\d+%\|.*\| \d+/{trainer.num_steps} \[", capsys.readouterr().err)


def test_transformed_views_are_centre_crops_and_mirrors():
  images = jax.random.uniform(jax.random.key(0), (3, 8, 8, 1))
  views = self_training.transformed_views(images, crops=(1.0, 0.5), flip=True)
  assert views.shape == (4, 3, 8, 8, 1)
  np.testing.assert_allclose(views[0], images, atol=1e-6)
  np.testing.assert_allclose(views[1], images[:, :, ::-1], atol=1e-6)
  # The central half of the side ([2, 6) in pixel coordinates) scaled up 2x about the centre, bilinear.
  centre = jax.image.scale_and_translate(
    images, (3, 8, 8, 1), (1, 2), jnp.array([2.0, 2.0]), jnp.array([-4.0, -4.0]), "linear", antialias=False
  )
  np.testing.assert_allclose(views[2], centre, atol=1e-5)
  np.testing.assert_allclose(views[3], centre[:, :, ::-1], atol=1e-5)


def test_pseudo_labels_average_the_transforms_then_threshold():
  probabilities = np.array(
    [
      [[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]],  # Transform 1.
      [[0.7, 0.3], [0.2, 0.8], [0.0, 1.0]],  # Transform 2.
    ]
  )  # Averages: [0.8, 0.2], [0.4, 0.6], [0.1, 0.9].
  labels, kept = self_training.pseudo_labels(probabilities, threshold=0.75)
  np.testing.assert_array_equal(labels, [0, 1, 1])
  np.testing.assert_array_equal(kept, [True, False, True])  # The second image's transforms disagree.
  assert labels.dtype == np.int32
  # Ranked within each predicted class: the more confident half (rounded up) of class 1's two images.
  _, kept = self_training.pseudo_labels(probabilities, threshold=0.0, top_fraction=0.5)
  np.testing.assert_array_equal(kept, [True, False, True])
  _, kept = self_training.pseudo_labels(probabilities, threshold=0.0, top_fraction=0.2)
  np.testing.assert_array_equal(kept, [True, False, True])  # ceil(0.2 x 1) = 1 of class 0, ceil(0.2 x 2) = 1.
  _, kept = self_training.pseudo_labels(probabilities, threshold=0.0, top_fraction=1.0)
  assert kept.all()


def test_self_training_retrains_on_labelled_plus_confident_pseudo_labels(monkeypatch):
  config = simclr_digits.get_config("self_training")
  settings = {k: v for k, v in config.evals.self_training.items() if k != "type"}
  settings.update(label_budgets=(1,), threshold=0.5, top_fraction=1.0)  # One labelled image per class.
  students = []

  def train(run_config, mesh, init, source, seed, trainer=None, label=None):
    assert label == "self_training/ssl/1_per_class teacher"
    return "trainer", "teacher"

  def accuracy(run_config, mesh, init, source, test_source, batch_size, seed, label):
    students.append((run_config, source, label))
    return 0.75

  probabilities = np.zeros((3, 30, 10))
  probabilities[:, :, 3] = 1.0
  probabilities[:, ::2] = 0.1  # Every other unlabelled image is uncertain (0.1 for every class).
  monkeypatch.setattr(finetune, "train_classifier", train)
  monkeypatch.setattr(finetune, "test_accuracy", lambda *args: 0.5)
  monkeypatch.setattr(finetune, "finetune_accuracy", accuracy)
  monkeypatch.setattr(self_training, "ensemble_probabilities", lambda *args: probabilities)
  context = _Context(config)
  results = self_training.run(context, **settings)
  labelled, _ = budget_subset(context.labels, 1, 0)
  kept = np.setdiff1d(np.arange(40), labelled)[1::2]
  assert results == {
    "self_training/ssl/1_per_class_teacher": 0.5,
    "self_training/ssl/1_per_class_pseudo_labelled": 0.5,
    "self_training/ssl/1_per_class_pseudo_label_accuracy": np.mean(context.labels[kept] == 3),
    "self_training/ssl/1_per_class": 0.75,
  }
  (student_config, source, label), *_ = students
  assert label == "self_training/ssl/1_per_class student"
  np.testing.assert_array_equal(source.indices, np.concatenate([labelled, kept]))
  labels = source.get(np.arange(25))["label"]
  np.testing.assert_array_equal(labels, np.r_[context.labels[labelled], np.full(15, 3)])
  assert student_config.epochs == settings["student_epochs"] and student_config.batch_size == 24  # 8 devices.


def test_fine_tuning_augmentation_follows_command_line_overrides():
  """An evaluator's `augment` holds overrides of the final config.augment, not a copy taken in get_config:
  `--config.augment.crop_scale=...` reaches fine-tuning, the evaluator's own keys still win."""
  config = simclr_digits.get_config()
  config.augment.crop_scale = (0.5, 1.0)  # What --config.augment.crop_scale='(0.5, 1.0)' does after get_config.
  run_config = finetune.finetune_config(config, 128, config.evals.finetune.to_dict())
  assert run_config.augment.crop_scale == (0.5, 1.0)
  assert run_config.augment.jitter_prob == run_config.augment.blur_prob == 0.0 < config.augment.jitter_prob


def test_evaluation_budgets_do_not_grow_with_the_dataset(monkeypatch):
  """Fine-tuning's `max_steps` caps its steps on a large dataset (60 epochs of 10% of 60k images would be 2,800
  steps) and leaves small ones to their epochs; evaluators due during training see a fixed subset of each split."""
  config = simclr_digits.get_config()
  settings = config.evals.finetune.to_dict()
  small = finetune.finetune_config(config, 1_000, settings)
  assert train_step.total_steps(small, 1_000) == 60 * 1_000 // 128  # Its epochs: under the cap.
  large = finetune.finetune_config(config, 6_000, settings)
  assert large.total_steps == train_step.total_steps(large, 6_000) == 1_000
  seen = []
  monkeypatch.setattr(experiment.evaluators, "run_evaluators", lambda evals, context, *_: seen.append(context) or {})
  state = types.SimpleNamespace(params={}, model_state={}, target={})
  method = types.SimpleNamespace(evaluate_teacher=False)
  trainer = types.SimpleNamespace(encode=print, method=method, model=None, batch_sharding=None)
  train = data.ArraySource(np.zeros((30, 8, 8, 1), np.float32), np.arange(30) % 10, 10)
  test = data.ArraySource(np.zeros((12, 8, 8, 1), np.float32), np.arange(12) % 10, 10)
  config.train_eval_examples = 20
  config.eval_baselines = ()
  for step in (4, 8, None):
    experiment.evaluate(config, "", None, trainer, state, train, step=step, test_source=test)
  during, again, after = seen
  assert len(during.train_source) == 20 and len(during.test_source) == 12  # The test split is smaller than 20.
  np.testing.assert_array_equal(during.train_source.indices, again.train_source.indices)  # Fixed, not redrawn.
  assert after.train_source is train and after.test_source is test
