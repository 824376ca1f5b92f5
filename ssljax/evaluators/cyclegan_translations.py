"""What a CycleGAN learned (Zhu et al. 2017's figures and numbers it can have without people or FCN scores), on
the whole test split of both domains: translations and their cycles as a PNG grid in the workdir and TensorBoard;
"cycle_l1_<d>", the mean |x - F(G(x))| in [0, 1] pixels (does the translation invert); with `paired_test` (domains
whose test splits hold the same scenes in order: the embedded digits and their dilation) the error of each
translation against the true counterpart, beside that of not translating at all ("identity"); with labelled
domains, whether a translation keeps its class: a raw-pixel classifier fitted to the target domain's training
images reads the translations ("ssl"), the source images untranslated ("identity") and the target's real test
images ("real_test"); `keeps_class` False for data whose labels are not classes to keep (tfds' cycle_gan labels
are the domains)."""

import jax
import numpy as np

from ssljax import data, paths
from ssljax.evaluators.reconstruction import tile
from ssljax.evaluators.sample_classes import pixel_classifier

NAME = "cyclegan_translations"
OTHER = {"a": "b", "b": "a"}


def run(context, num_images: int = 16, paired_test: bool = False, keeps_class: bool = True) -> dict:
  """{"cyclegan_translations/ssl/cycle_l1_<d>"}, with `paired_test` {".../<ssl|identity>/<d>_to_<e>_l1"}, with
  labels {".../<ssl|identity|real_test>/<d>_to_<e>_classifier_accuracy"}; writes WORKDIR/cyclegan_translations.png:
  per column a test pair, rows a, G(a), F(G(a)), [the true b], then b, F(b), G(F(b)), [the true a]."""
  config = context.config
  model, variables = context.model, context.variables
  translate = jax.jit(lambda v, x, to: model.apply(v, x, to, method="translate"), static_argnums=2)
  sums, count, shown = {}, 0, {}
  labelled = keeps_class and bool(context.train_source.num_classes)
  if labelled:  # Domain B's classifier reads translations to B, domain A's those to A.
    classify = {"a": pixel_classifier(context.train_source.source), "b": pixel_classifier(context.train_source.other)}

  def add(key, value):
    sums[key] = sums.get(key, 0.0) + float(value)

  for batch, valid in data.eval_batches(context.test_source, config.eval_batch_size, context.batch_sharding):
    real = {"a": np.asarray(batch["image"])[:valid], "b": np.asarray(batch["image_b"])[:valid]}
    labels = {"a": np.asarray(batch["label"])[:valid], "b": np.asarray(batch["label_b"])[:valid]}
    for source, target in OTHER.items():
      translated = translate(variables, batch["image" if source == "a" else "image_b"], target)
      cycled = np.asarray(translate(variables, translated, source))[:valid]
      translated = np.asarray(translated)[:valid]
      add(f"ssl/cycle_l1_{source}", np.abs(cycled - real[source]).mean(axis=(1, 2, 3)).sum())
      direction = f"{source}_to_{target}"
      if paired_test:
        add(f"ssl/{direction}_l1", np.abs(translated - real[target]).mean(axis=(1, 2, 3)).sum())
        add(f"identity/{direction}_l1", np.abs(real[source] - real[target]).mean(axis=(1, 2, 3)).sum())
      if labelled:
        for features, images, truth in (
          ("ssl", translated, labels[source]),
          ("identity", real[source], labels[source]),
          ("real_test", real[target], labels[target]),
        ):
          add(f"{features}/{direction}_classifier_accuracy", (classify[target](images).argmax(-1) == truth).sum())
      if not shown.get(source):
        shown[source] = [real[source], translated, cycled, *([real[target]] if paired_test else [])]
    count += valid
  columns = min(num_images, count)
  rows = [row[:columns] for d in "ab" for row in shown[d]]
  grid = tile(np.concatenate(rows), columns=columns)
  zoom = max(1, 48 // config.dataset.image_size)
  grid = grid.repeat(zoom, 0).repeat(zoom, 1)
  if jax.process_index() == 0:
    paths.write_png(paths.resolve(context.workdir) / f"{NAME}.png", grid)
    if context.writer is not None:
      context.writer.write_image(0, NAME, grid)
  return {f"{NAME}/{key}": value / count for key, value in sums.items()}
