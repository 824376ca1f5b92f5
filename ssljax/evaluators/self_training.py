"""Self-training with data distillation (our lecture 002; Radosavovic et al. 2018, "Data Distillation: Towards
Omni-Supervised Learning"): the label-efficient protocol that uses the unlabelled rest of the training set.

For each label budget: (1) the teacher is the pretrained encoder fine-tuned on the labelled subset (exactly the
`finetune` evaluator's run, whose accuracy is reported beside the student's); (2) it predicts the rest of the
training set, its softmax averaged over test-time transforms of each image (data distillation's ensemble of one
model over transforms: centre crops of the given fractions of the side, each also mirrored when `flip`);
(3) the images whose averaged confidence reaches `threshold` and ranks in the `top_fraction` of their predicted
class get the arg-max as a hard pseudo-label (discarding uncertain ones against early mistakes reinforcing
themselves); (4) the student, again from the pretrained
encoder, is fine-tuned with the same recipe on labelled + pseudo-labelled images for `student_epochs`.

Results ("self_training/ssl/<budget>[_<what>]"): the student's test accuracy; "_teacher", the fine-tune alone;
"_pseudo_labelled", the fraction of the unlabelled images kept; "_pseudo_label_accuracy", how many of the kept
pseudo-labels are right (read from the true labels, which nothing trains on).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import augment, data
from ssljax.evaluators import finetune
from ssljax.evaluators.label_budgets import budget_subset
from ssljax.train_step import encoder_variables


def transformed_views(images, crops=(1.0,), flip: bool = False):
  """images [N, S, S, C] -> [T, N, S, S, C]: for each fraction of `crops`, the centred crop of that fraction of
  the side resized back to S (bilinear), followed by its mirror image when `flip`; T = len(crops) x (1 + flip)."""
  size = images.shape[1]
  views = []
  for fraction in crops:
    box = fraction * size
    offset = (size - box) / 2
    for mirrored in (False, True) if flip else (False,):
      resize = functools.partial(augment.resize_box, top=offset, left=offset, box_h=box, box_w=box, size=size)
      views.append(jax.vmap(functools.partial(resize, flip=mirrored))(images))
  return jnp.stack(views)


def pseudo_labels(probabilities: np.ndarray, threshold: float, top_fraction: float = 1.0):
  """probabilities [T, N, C] (one softmax per transform) -> (labels [N] int32, kept [N] bool): the arg-max of the
  transform-averaged probabilities, kept where that probability is at least `threshold` and among the
  `top_fraction` most confident of the images given the same label (rounded up; a ranking, which unlike a
  threshold does not depend on how calibrated the teacher is, and keeps the classes balanced)."""
  mean = probabilities.mean(0)
  labels, confidence = mean.argmax(-1).astype(np.int32), mean.max(-1)
  kept = confidence >= threshold
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    ranked = members[np.argsort(-confidence[members], kind="stable")]
    kept[ranked[int(np.ceil(top_fraction * len(members))) :]] = False
  return labels, kept


def ensemble_probabilities(trainer, variables, source, batch_size: int, crops, flip: bool) -> np.ndarray:
  """[T, len(source), C] softmax of the trained classifier over `transformed_views` of every image of `source`."""

  @jax.jit
  def predict(variables, images):
    views = transformed_views(images, crops, flip)
    logits = jax.vmap(lambda x: trainer.model.apply(variables, x, train=False)["logits"])(views)
    return jax.nn.softmax(logits.astype(jnp.float32), -1)

  chunks = []
  for batch, valid in data.eval_batches(source, batch_size, trainer.batch_sharding):
    chunks.append(np.asarray(predict(variables, batch["image"]))[:, :valid])
  return np.concatenate(chunks, axis=1)


def run(
  context,
  threshold: float,
  student_epochs: float,
  top_fraction: float = 1.0,
  crops=(1.0,),
  flip: bool = False,
  label_budgets=("1pct", "10pct"),
  seed: int = 0,
  **settings,
) -> dict:
  """See the module docstring; `settings` are `finetune`'s (batch_size, epochs, warmup_epochs, optimizer, augment,
  drop_path, label_smoothing), for teacher and student alike."""
  _, train_labels, _ = context.features()
  init = encoder_variables(context.variables)
  eval_batch_size = context.config.eval_batch_size
  results = {}
  for budget in label_budgets:
    labelled, budget_name = budget_subset(train_labels, budget, seed)
    unlabelled = np.setdiff1d(np.arange(len(train_labels)), labelled)
    labelled_source = data.SubsetSource(context.train_source, labelled)
    config = finetune.finetune_config(context.config, len(labelled), settings)
    key = f"self_training/ssl/{budget_name}"
    trainer, teacher = finetune.train_classifier(
      config, context.mesh, init, labelled_source, seed, label=f"{key} teacher"
    )
    results[f"self_training/ssl/{budget_name}_teacher"] = finetune.test_accuracy(
      trainer, teacher, context.test_source, eval_batch_size
    )
    unlabelled_source = data.SubsetSource(context.train_source, unlabelled)
    probabilities = ensemble_probabilities(trainer, teacher, unlabelled_source, eval_batch_size, crops, flip)
    labels, kept = pseudo_labels(probabilities, threshold, top_fraction)
    results[f"self_training/ssl/{budget_name}_pseudo_labelled"] = float(kept.mean()) if len(kept) else 0.0
    if kept.any():
      correct = labels[kept] == train_labels[unlabelled][kept]
      results[f"self_training/ssl/{budget_name}_pseudo_label_accuracy"] = float(correct.mean())
    indices = np.concatenate([labelled, unlabelled[kept]])
    student_labels = np.concatenate([train_labels[labelled], labels[kept]]).astype(np.int32)
    student_source = data.SubsetSource(context.train_source, indices, student_labels)
    student_config = finetune.finetune_config(context.config, len(indices), {**settings, "epochs": student_epochs})
    results[key] = finetune.finetune_accuracy(
      student_config, context.mesh, init, student_source, context.test_source, eval_batch_size, seed, f"{key} student"
    )
  return results
