"""What a CycleGAN learned (Zhu et al. 2017's figures and the numbers it can have without people or FCN scores), on
each domain's whole test split: translations and their cycles as a PNG grid in the workdir and TensorBoard;
"cycle_l1_<d>", the mean |x - F(G(x))| in [0, 1] pixels (does the translation invert); with `paired_test` (domains
whose test splits hold the same scenes in order: the embedded digits and their dilation) the error of each
translation against its true counterpart, beside that of not translating at all ("untranslated"); with
`keeps_class` and labelled domains, whether a translation keeps its class: a raw-pixel classifier fitted to the
target domain's training images reads the translations ("ssl"), the source images untranslated ("untranslated")
and the target's real test images ("real_test"). tfds' cycle_gan labels are the domains: `keeps_class` False."""

import jax
import numpy as np

from ssljax import data, paths
from ssljax.config import ConfigError
from ssljax.evaluators.reconstruction import tile
from ssljax.evaluators.sample_classes import pixel_classifier

NAME = "cyclegan_translations"


def run(context, num_images: int = 16, paired_test: bool = False, keeps_class: bool = True) -> dict:
  """{".../ssl/cycle_l1_<d>"}, with `paired_test` {".../<ssl|untranslated>/<d>_to_<e>_l1"}, with classes
  {".../<ssl|untranslated|real_test>/<d>_to_<e>_classifier_accuracy"}; writes WORKDIR/cyclegan_translations.png:
  per column a test image, rows a, G(a), F(G(a)), [the true b], then b, F(b), G(F(b)), [the true a]."""
  config, model, variables = context.config, context.model, context.variables
  translate = jax.jit(lambda v, x, to: model.apply(v, x, to, method="translate"), static_argnums=2)
  tests = {"a": context.test_source.source, "b": context.test_source.other}
  if paired_test and len(tests["a"]) != len(tests["b"]):
    raise ConfigError(
      f"config.evals: paired_test needs test splits of one length, not {len(tests['a'])} and {len(tests['b'])}"
    )
  labelled = keeps_class and bool(context.train_source.num_classes)
  trains = {"a": context.train_source.source, "b": context.train_source.other}
  classify = {d: pixel_classifier(trains[d]) for d in "ab"} if labelled else {}
  results, rows = {}, []
  for source, target in (("a", "b"), ("b", "a")):
    sums, start, shown = {}, 0, None
    direction = f"{source}_to_{target}"
    for batch, valid in data.eval_batches(tests[source], config.eval_batch_size, context.batch_sharding):
      translated = translate(variables, batch["image"], target)
      cycled = np.asarray(translate(variables, translated, source))[:valid]
      translated, real = np.asarray(translated)[:valid], np.asarray(batch["image"])[:valid]
      counterpart = tests[target].get(np.arange(start, start + valid))["image"] if paired_test else None
      terms = {"ssl/cycle_l1": np.abs(cycled - real)}
      if paired_test:
        terms |= {"ssl/l1": np.abs(translated - counterpart), "untranslated/l1": np.abs(real - counterpart)}
      sums_of = {k: v.mean(axis=(1, 2, 3)).sum() for k, v in terms.items()}
      if labelled:
        labels = np.asarray(batch["label"])[:valid]
        sums_of |= {
          f"{name}/classifier_accuracy": (classify[target](images).argmax(-1) == labels).sum()
          for name, images in (("ssl", translated), ("untranslated", real))
        }
      for key, value in sums_of.items():
        sums[key] = sums.get(key, 0.0) + float(value)
      shown = shown or [real, translated, cycled, *([counterpart] if paired_test else [])]
      start += valid
    for key, value in sums.items():
      features, setting = key.split("/")
      name = f"cycle_l1_{source}" if setting == "cycle_l1" else f"{direction}_{setting}"
      results[f"{NAME}/{features}/{name}"] = value / start
    if labelled:
      target_test = data.read_examples(tests[target], np.arange(len(tests[target])))
      accuracy = np.mean(classify[target](target_test["image"]).argmax(-1) == target_test["label"])
      results[f"{NAME}/real_test/{direction}_classifier_accuracy"] = float(accuracy)
    rows.append(shown)
  columns = min(num_images, *(len(group[0]) for group in rows))
  grid = tile(np.concatenate([row[:columns] for group in rows for row in group]), columns=columns)
  zoom = max(1, 48 // config.dataset.image_size)
  grid = grid.repeat(zoom, 0).repeat(zoom, 1)
  if jax.process_index() == 0:
    paths.write_png(paths.resolve(context.workdir) / f"{NAME}.png", grid)
    if context.writer is not None:
      context.writer.write_image(0, NAME, grid)
  return results
