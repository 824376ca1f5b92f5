"""Prepare a tfds dataset offline in the format ssljax reads: ArrayRecord (random access, no TensorFlow when
training).

  pip install -e '.[prepare]'
  python -m ssljax.prepare NAME [--data_dir D] [--manual_dir M]

then train with `--config.dataset.name=NAME --config.dataset.data_dir=D` (D defaults to tfds's own,
$TFDS_DATA_DIR or ~/tensorflow_datasets). Datasets whose files cannot be downloaded (ImageNet: `imagenet2012`)
are built from the files you place in `--manual_dir` (default: D/downloads/manual).

This is `tfds build NAME --file_format=array_record` through tfds's Python API: the 4.9 `tfds build` command
imports apache_beam at start-up (tensorflow/datasets#5463), and installing apache-beam would downgrade numpy below
our pin. Building encodes images with TensorFlow, hence the `prepare` extra (tensorflow-cpu, plus
importlib_resources, which tfds uses without declaring it on Python >= 3.9: tensorflow/datasets#11212).
"""

import argparse
import contextlib
import os
import shutil
import sys
from unittest import mock

from ssljax.config import ConfigError

DOWNLOAD_RETRIES = 2  # Per URL; tfds's own 10, with its exponential backoff, take ~3.5 min to fail offline.


def prepare(name: str, data_dir: str | None = None, manual_dir: str | None = None) -> str:
  """Downloads (or reads from `manual_dir`) and writes tfds dataset `name` as ArrayRecord under `data_dir`;
  returns the data dir it is in (what `config.dataset.data_dir` takes). tfds shows a progress bar per split.
  A build that fails (offline, say) or is interrupted removes what it created: no empty version folder or partial
  download is left behind."""
  import tensorflow_datasets as tfds

  try:
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  except tfds.core.registered.DatasetNotFoundError:
    raise ConfigError(f"NAME: {name!r} is not a tfds dataset (see tfds.list_builders())") from None
  root = str(builder.data_dir_root)
  before = _paths_under(root)
  try:
    _build(name, builder, os.path.expanduser(manual_dir) if manual_dir else None)
  except BaseException:
    _remove_new_paths(root, before)
    raise
  return root


def _build(name: str, builder, manual_dir: str | None):
  """tfds's build of `builder`, its errors turned into one-line ConfigErrors."""
  import tensorflow_datasets as tfds

  try:
    with _few_download_retries():
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  except ModuleNotFoundError as error:
    raise ConfigError(f"NAME: building {name!r} needs the module {error.name!r}: pip install -e '.[prepare]'") from None
  except OSError as error:  # requests' ConnectionError among them: no network, or a server that refused.
    reason = " ".join(str(error).split())[:160]
    raise ConfigError(
      f"NAME: downloading {name!r} failed ({type(error).__name__}: {reason}); prepare it where the network is "
      f"reachable and copy the data dir over, or give its files with --manual_dir"
    ) from None
  except AssertionError as error:  # tfds asserts that a manual-download dataset's files are in manual_dir.
    if "manual" not in str(error).lower():
      raise
    where = manual_dir or os.path.join(builder.data_dir_root, "downloads", "manual")
    raise ConfigError(
      f"--manual_dir: {name!r} is built from files you download yourself; put them in {where} "
      f"(see tfds's catalog page for {name})"
    ) from None


def _few_download_retries():
  """tfds retries each URL 10 times with exponential backoff, so an offline machine fails only after ~3.5 min;
  tfds has no setting for it. Two retries (0.6 s of backoff) still ride out a dropped connection."""
  from tensorflow_datasets.core.download import downloader

  if not hasattr(downloader, "MAX_RETRIES"):  # A tfds that no longer has the constant: its own default.
    return contextlib.nullcontext()
  return mock.patch.object(downloader, "MAX_RETRIES", DOWNLOAD_RETRIES)


def _paths_under(root: str) -> set[str]:
  """Every file and folder under `root`, `root` itself included when it exists."""
  if not os.path.exists(root):
    return set()
  found = {root}
  for folder, subfolders, files in os.walk(root):
    found.update(os.path.join(folder, name) for name in subfolders + files)
  return found


def _remove_new_paths(root: str, before: set[str]):
  """Removes what appeared under `root` since `before` (`_paths_under`): the outermost new paths, whole."""
  for path in sorted(_paths_under(root) - before):
    if os.path.dirname(path) in before or path == root:  # Outermost: its parent existed before (or it is root).
      shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m ssljax.prepare", description=__doc__.split("\n\n")[0])
  parser.add_argument("name", help="tfds dataset name, e.g. cifar10, imagenet2012")
  parser.add_argument("--data_dir", default=None, help="where to write it (default: tfds's data dir)")
  parser.add_argument("--manual_dir", default=None, help="files of a manual-download dataset")
  args = parser.parse_args(argv)
  try:
    data_dir = prepare(args.name, args.data_dir, args.manual_dir)
  except ConfigError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
  print(
    f"{args.name} prepared in {data_dir}: train with --config.dataset.name={args.name} "
    f"--config.dataset.data_dir={data_dir}"
  )


if __name__ == "__main__":
  main()
