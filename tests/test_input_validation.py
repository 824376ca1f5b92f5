"""Every row of the table in docs/input_validation.md, run as `python -m ssljax.train` would run it (in-process):
the one line printed must be the row's message, and nothing in the workdir may change."""

import contextlib
import os
import re
import shlex

import pytest
import tensorflow_datasets as tfds
from absl import flags
from ml_collections import ConfigDict, config_flags

from ssljax import cli, experiment, prepare
from tests import tiny_tfds

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


TINY = f"--config.dataset.name={tiny_tfds.NAME} --config.dataset.data_dir=WORKDIR/data"
SETUPS = {  # Rows that need more than a fresh workdir.
  "--config.dataset.name=mnist --config.dataset.channels=3": _tfds_mock(8),
  "--config.dataset.name=mnist": _tfds_mock(0),
  "--config.total_steps=2 --config.model.width=0.25": _trained,
  "--config.dataset.name=cifar10 --config.dataset.data_dir=WORKDIR/data": _prepared(None),
  TINY: _prepared("tfrecord"),
  f"{TINY} --config.dataset.test_split=validation": _prepared("array_record"),
}


def _parse(argv: list[str]):
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, lock_config=True, sys_argv=argv)
  flags.DEFINE_string("workdir", None, "", flag_values=flag_values)
  flags.FLAGS.mark_as_parsed()  # `cli.run_command` reads its own flags (--multihost, ...): their defaults.
  cli.parse_flags(argv, flag_values)
  return flag_values


def _run(bad_input: str, workdir) -> str | None:
  """Runs `ssljax.train` with the bad input; returns the last line it printed on stderr before exiting 2 (None
  if it did not fail). A bad input starting with "config[" is a statement a config file might contain."""
  args, statement = [DEFAULT_CONFIG, f"--workdir={workdir}"], None
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
