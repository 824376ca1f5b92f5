"""Every row of the table in docs/input_validation.md, run as `python -m ssljax.train` would run it (in-process):
the one line printed must be the row's message, and nothing in the workdir may change."""

import contextlib
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from absl import flags
from ml_collections import ConfigDict, config_flags
from PIL import Image

from ssljax import cli, experiment, prepare
from tests import tiny_tfds
from tests.test_own_data import png_claiming

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, "docs", "input_validation.md")
DEFAULT_CONFIG = "--config=configs/simclr_digits.py:runlocal,train_only"
TRAINED_WIDTH = "--config.total_steps=2 --config.model.width=0.125"


def doc_rows() -> list[tuple[str, str]]:
  """(bad input, message) for each row of the doc's table; cells are `code`."""
  with open(DOC) as f:
    cells = re.findall(r"^\| `(.+?)` \| `(.+?)` \|$", f.read(), re.MULTILINE)
  return [(bad.replace("\\|", "|"), message.replace("\\|", "|")) for bad, message in cells]


def _tfds_mock(num_examples):
  def setup(workdir):
    return tfds.testing.mock_data(num_examples=num_examples)

  return setup


def _trained(workdir):
  """A workdir that already holds a short run of the default config."""
  assert _run(f"{DEFAULT_CONFIG} {TRAINED_WIDTH}", workdir) is None
  return contextlib.nullcontext()


def _prepared(file_format: str | None):
  """WORKDIR/data holding the tests' tiny tfds dataset, prepared by ssljax.prepare (None: an empty directory;
  "tfrecord": as if prepared by tfds's default writer, which ssljax cannot read by index)."""

  def setup(workdir):
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True)
    if file_format:
      prepare.prepare(tiny_tfds.NAME, str(data_dir))
    if file_format == "tfrecord":
      version = data_dir / tiny_tfds.NAME / "1.0.0"
      info = version / "dataset_info.json"
      info.write_text(info.read_text().replace('"fileFormat": "array_record"', '"fileFormat": "tfrecord"'))
      for path in version.glob("*.array_record-*"):
        path.rename(version / path.name.replace("array_record", "tfrecord"))
    return contextlib.nullcontext()

  return setup


def _someone_elses_folder(workdir):
  """WORKDIR/theirs: a folder of another project's files (no ssljax run)."""
  folder = workdir / "theirs"
  (folder / "checkpoints" / "100").mkdir(parents=True)
  (folder / "checkpoints" / "100" / "model.pt").write_bytes(b"weights")
  for name, text in (("config.json", '{"lr": 0.1}'), ("results.json", "{}"), ("metrics.jsonl", '{"step": 1}\n')):
    (folder / name).write_text(text)
  return contextlib.nullcontext()


def _npz_data(name: str, images=None, labels=None, test_labels=None):
  """WORKDIR/NAME holding train.npz and test.npz of 80 / 20 uint8 8 x 8 images (10 classes), with the given
  training images or labels, or test labels, in place of good ones."""

  def setup(workdir):
    rng = np.random.default_rng(0)
    folder = workdir / name
    folder.mkdir(parents=True)
    train_images = rng.integers(0, 256, (80, 8, 8, 1), np.uint8) if images is None else images
    train_labels = np.arange(80) % 10 if labels is None else labels
    np.savez(folder / "train.npz", images=train_images, labels=train_labels)
    test = np.arange(20) % 10 if test_labels is None else test_labels
    np.savez(folder / "test.npz", images=rng.integers(0, 256, (20, 8, 8, 1), np.uint8), labels=test)
    return contextlib.nullcontext()

  return setup


def _huge_header(workdir):
  """WORKDIR/huge: a folder dataset of 8 x 8 PNGs (train/ and test/, classes a and b) plus one PNG whose header
  claims 100,000 x 100,000 pixels."""
  for split, count in (("train", 40), ("test", 10)):
    for i in range(count):
      folder = workdir / "huge" / split / "ab"[i % 2]
      folder.mkdir(parents=True, exist_ok=True)
      Image.fromarray(np.full((8, 8), 40 * (i % 5), np.uint8)).save(folder / f"{i}.png")
  (workdir / "huge" / "train" / "a" / "huge.png").write_bytes(png_claiming(100_000, 100_000))
  return contextlib.nullcontext()


def _npz_file(name: str, write):
  """WORKDIR/NAME with a good test.npz and a train.npz that `write(path)` writes."""

  def setup(workdir):
    _npz_data(name)(workdir)
    write(workdir / name / "train.npz")
    return contextlib.nullcontext()

  return setup


def _truncated(path):
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _npy(path):
  with open(path, "wb") as f:
    np.save(f, np.zeros((80, 8, 8, 1), np.uint8))


def _with(values, index, value):
  values = np.array(values)
  values[index] = value
  return values


NPZ = "--config.dataset.name=npz --config.dataset.data_dir=WORKDIR/"
TINY = f"--config.dataset.name={tiny_tfds.NAME} --config.dataset.data_dir=WORKDIR/data"
SETUPS = {  # Rows that need more than a fresh workdir.
  "--config.dataset.name=mnist --config.dataset.channels=3": _tfds_mock(8),
  "--config.dataset.name=mnist": _tfds_mock(0),
  "--config=configs/gpt2_small_lm1b.py:runlocal --config.dataset.name=mnist": _tfds_mock(8),
  "--config.total_steps=2 --config.model.width=0.25": _trained,
  "--config.dataset.name=cifar10 --config.dataset.data_dir=WORKDIR/data": _prepared(None),
  TINY: _prepared("tfrecord"),
  f"{TINY} --config.dataset.test_split=validation": _prepared("array_record"),
  "--workdir=WORKDIR/theirs": _someone_elses_folder,
  f"{NPZ}nan": _npz_data("nan", images=_with(np.full((80, 8, 8, 1), 0.5, np.float32), (3, 2, 2, 0), np.nan)),
  f"{NPZ}float_labels": _npz_data("float_labels", labels=_with(np.arange(80.0) % 10, 7, 2.5)),
  f"{NPZ}stray_label": _npz_data("stray_label", labels=_with(np.arange(80) % 10, 17, 1000)),
  f"{NPZ}negative_label": _npz_data("negative_label", labels=_with(np.arange(80) % 10, 5, -1)),
  f"{NPZ}int64_label": _npz_data("int64_label", labels=_with(np.arange(80, dtype=np.int64) % 10, 9, 2**32 + 1)),
  f"{NPZ}test_labels": _npz_data("test_labels", test_labels=_with(np.arange(20) % 10, 4, 12)),
  "--config.dataset.name=folder --config.dataset.data_dir=WORKDIR/huge": _huge_header,
  f"{NPZ}object_arrays": _npz_file("object_arrays", lambda p: np.savez(p, images=np.array([None, 1], object))),
  f"{NPZ}truncated": _npz_file("truncated", _truncated),
  f"{NPZ}npy": _npz_file("npy", _npy),
  f"{NPZ}channels_first": _npz_file("channels_first", lambda p: np.savez(p, images=np.zeros((80, 1, 8, 8), np.uint8))),
  f"{NPZ}empty": _npz_file("empty", lambda p: np.savez(p, images=np.zeros((0, 8, 8, 1), np.uint8))),
}


def _parse(argv: list[str]):
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, lock_config=True, sys_argv=argv)
  flags.DEFINE_string("workdir", None, "", flag_values=flag_values)
  flags.FLAGS.mark_as_parsed()  # `cli.run_command` reads its own flags (--multihost, ...): their defaults.
  cli.parse_flags(argv, flag_values)
  return flag_values


def _run(bad_input: str, workdir) -> str | None:
  """Runs `ssljax.train` with the bad input and --workdir=WORKDIR/run (beside the data a setup writes in WORKDIR);
  returns "failed" if it exited with status 2, None if it did not fail. A bad input starting with "config[" is a
  statement a config file might contain."""
  args, statement = [DEFAULT_CONFIG, f"--workdir={workdir}/run"], None
  bad_input = bad_input.replace("WORKDIR", str(workdir))
  if bad_input.startswith("--"):
    extra = shlex.split(bad_input)
    args = [a for a in args if not any(a.split("=")[0] == e.split("=")[0] for e in extra)] + extra
  else:
    statement = bad_input
  try:
    flag_values = _parse(["ssljax.train", *args])
    config = flag_values.config
    if statement:  # Edits the dict a config file would build, before it becomes a (type-checked) ConfigDict.
      tree = config.to_dict()
      exec(statement, {"config": tree})  # noqa: S102 - the statements are the doc's, in this repo.
      config = ConfigDict(tree)
    cli.run_command(lambda: experiment.train_and_evaluate(config, flag_values.workdir))
  except SystemExit as exit_:
    assert exit_.code == 2
    return "failed"
  return None


def _files(path) -> dict:
  return {p: p.read_bytes() for p in path.rglob("*") if p.is_file()} if path.exists() else {}


@pytest.mark.parametrize("bad_input,message", doc_rows())
def test_bad_input_gets_the_documented_one_line_error_and_changes_nothing(
  bad_input, message, tmp_path, monkeypatch, capsys
):
  monkeypatch.chdir(REPO)
  workdir = tmp_path / "workdir"
  with SETUPS.get(bad_input, lambda workdir: contextlib.nullcontext())(workdir):
    before = _files(workdir)
    capsys.readouterr()
    assert _run(bad_input, workdir) == "failed", f"{bad_input} did not fail"
    stderr = capsys.readouterr().err
  lines = [line for line in stderr.splitlines() if line.strip()]
  assert lines[-1].replace(str(workdir), "WORKDIR") == message
  assert "Traceback" not in stderr
  assert _files(workdir) == before


def test_the_doc_covers_every_setup():
  documented = {bad for bad, _ in doc_rows()}
  assert len(documented) >= 25 and set(SETUPS) <= documented


def test_a_cpu_device_count_below_one_is_a_flag_error(tmp_path):
  """--cpu_devices=0 is refused when the flags are parsed (it reached JAX before, as a traceback)."""
  command = [sys.executable, "-m", "ssljax.train", DEFAULT_CONFIG, f"--workdir={tmp_path / 'run'}", "--cpu_devices=0"]
  run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
  assert run.returncode == 2 and run.stderr.strip() == "error: flag --cpu_devices=0: 0 is not a positive integer"
  assert not (tmp_path / "run").exists()


def test_configs_load_from_any_working_directory(tmp_path):
  """A config that builds on another (`from configs import ...`) loads when the command runs elsewhere."""
  code = (
    "from absl import flags; from ml_collections import config_flags; from ssljax import cli;"
    "values = flags.FlagValues(); config_flags.DEFINE_config_file('config', None, '', flag_values=values);"
    f"cli.parse_flags(['train', '--config={REPO}/configs/byol_digits.py:runlocal'], values);"
    "print(values.config.method)"
  )
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
  assert run.returncode == 0 and run.stdout.split() == ["byol"], run.stderr
