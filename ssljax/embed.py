"""Use the encoder you trained, outside ssljax's own evaluation.

  python -m ssljax.embed --workdir W [--data NAME | DIR] [--split S] --out emb.npz

writes the features of every image of a dataset: by default the run's own test split; `--data` names another
dataset ("digits", a prepared tfds name, "folder"/"npz" with the run's data_dir) or a directory of PNG/JPEG images
(flat, or one subdirectory per class). emb.npz holds "features" [N, D] float32 (exactly what the evaluators see:
the encoder in inference mode, the teacher for methods evaluated on it), "labels" [N] (-1 when unlabelled) and, for
a directory, "files" [N] (paths relative to it). In Python: `ssljax.load_encoder` (ssljax/pretrained.py).
"""

import functools
import io
import os

import jax
import numpy as np
from absl import app, flags

from ssljax import cli, data, evaluators, paths, pretrained
from ssljax.config import ConfigError

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's directory (config.json and checkpoints/).")
_DATA = flags.DEFINE_string("data", None, "A dataset name or a directory of images (default: the run's dataset).")
_SPLIT = flags.DEFINE_string("split", None, "The dataset's split (default: the run's test split).")
_OUT = flags.DEFINE_string("out", None, "The .npz file to write.")


def _source(config, name: str | None, split: str | None):
  """(source, file names or None) for `--data` / `--split`."""
  if name and os.path.isdir(name):
    directory, dataset = os.path.abspath(name), config.dataset
    source = data.FolderSource(  # Decoded as the run's own folders are: its centre crop, its bad-file policy.
      os.path.dirname(directory),
      os.path.basename(directory),
      dataset.image_size,
      dataset.channels,
      skip_bad_files=dataset.get("skip_bad_files", False),
      center_crop=dataset.get("center_crop", 1.0),
    )
    return source, np.array([os.path.relpath(f, directory) for f in source.files])
  dataset = config.dataset.to_dict()
  if name and name != dataset["name"]:
    dataset.update(name=name, data_dir=None if name not in ("folder", "npz") else dataset.get("data_dir"))
  split = split or dataset["test_split"]
  source = data.load_source(type(config)(dataset), split, config.get("text"))
  return source, np.array(source.files) if isinstance(source, data.FolderSource) else None


def embed(workdir: str, out: str, name: str | None = None, split: str | None = None) -> dict:
  """Writes (and returns) {"features", "labels"[, "files"]} of a dataset's images to `out` (see the module)."""
  config, trainer, variables = pretrained.restore_run(workdir)
  source, files = _source(config, name, split)
  featurize = functools.partial(trainer.encode, variables)
  features, labels = evaluators.extract_features(
    {"ssl": featurize}, source, config.eval_batch_size, trainer.batch_sharding, progress="embed"
  )
  arrays = {"features": features["ssl"], "labels": labels, **({"files": files} if files is not None else {})}
  if jax.process_index() == 0:
    file = paths.resolve(out)
    file.parent.mkdir(parents=True, exist_ok=True)
    encoded = io.BytesIO()
    np.savez(encoded, **arrays)
    paths.write_atomic(file, encoded.getvalue())  # An interrupted run leaves no half file at `out`.
    print(f"wrote {out}: features {arrays['features'].shape}")
  return arrays


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")

  def command():
    if not _WORKDIR.value or not _OUT.value:
      raise ConfigError("--workdir and --out are required")
    embed(_WORKDIR.value, _OUT.value, _DATA.value, _SPLIT.value)

  cli.run_command(command)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
