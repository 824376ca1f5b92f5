"""Users' own data: a folder of PNGs in class subfolders trains and evaluates end to end, a folder without classes
pretrains and is embedded (`ssljax.embed` writes the evaluators' features, `load_encoder` reproduces them), a
corrupt file is a one-line error naming it or is skipped and counted, and npz arrays load with or without labels."""

import io
import json
import re
import struct
import zlib

import numpy as np
import pytest
from absl import flags
from PIL import Image
from sklearn.datasets import load_digits

import ssljax
from configs import simclr_digits
from ssljax import cli, data, embed, experiment
from ssljax.config import ConfigError


def _write_pngs(directory, images, labels=None):
  """uint8 [N, H, W] images as PNG files, in class subdirectories when `labels` are given."""
  for index, image in enumerate(images):
    folder = directory / (f"class_{labels[index]}" if labels is not None else "")
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / f"{index:03d}.png")


@pytest.fixture(scope="module")
def digit_pngs():
  """Real digits as 8-bit, 12 px images: 64 for training, 20 for testing."""
  digits = load_digits()
  images = np.asarray(
    [Image.fromarray((d * 255 / 16).astype(np.uint8)).resize((12, 12), Image.BILINEAR) for d in digits.images[:84]]
  )
  return images, digits.target[:84]


def _config(data_dir, **dataset):
  config = simclr_digits.get_config("runlocal")
  config.dataset.update(name="folder", data_dir=str(data_dir), **dataset)
  config.evals = {"linear": config.evals.linear, "knn": {**config.evals.knn, "every_steps": 0}}
  config.eval_baselines = ()
  config.total_steps = 2
  return config


def test_a_folder_with_class_subfolders_trains_and_evaluates(digit_pngs, tmp_path):
  """Its training folder also holds a digit in each mode the fast JPEG path does not read (RGBA, palette and
  16-bit PNG, CMYK JPEG) and in gray and RGB JPEG: host crops and evaluation read them all."""
  images, labels = digit_pngs
  _write_pngs(tmp_path / "data" / "train", images[:64], labels[:64])
  _write_pngs(tmp_path / "data" / "test", images[64:], labels[64:])
  digit = Image.fromarray(images[0])
  for mode, name in (("RGBA", "a.png"), ("P", "b.png"), ("CMYK", "c.jpg"), ("L", "d.jpg"), ("RGB", "e.jpg")):
    digit.convert(mode).save(tmp_path / "data" / "train" / f"class_{labels[0]}" / name)
  Image.fromarray(images[0].astype(np.uint16) * 257).save(tmp_path / "data" / "train" / f"class_{labels[0]}" / "f.png")
  source = data.load_source(_config(tmp_path / "data").dataset, "test")
  assert source.classes == [f"class_{c}" for c in range(10)] and source.num_classes == 10
  np.testing.assert_array_equal(np.sort(source.labels), np.sort(labels[64:]))
  # The training views cut from the full images on the host; evaluation images the centre 87.5%.
  config = _config(tmp_path / "data", host_crops=True, host_resize="area", center_crop=0.875)
  results = experiment.train_and_evaluate(config, str(tmp_path / "run"))
  assert set(results) == {"linear_fast/ssl/all", "linear_fast/ssl/10_per_class", "knn/ssl/k20"}
  assert all(0.0 <= v <= 1.0 for v in results.values())
  assert json.loads((tmp_path / "run" / "config.json").read_text())["dataset"]["data_dir"] == str(tmp_path / "data")


def test_a_folder_without_classes_pretrains_and_embeds(digit_pngs, tmp_path, caplog):
  images, _ = digit_pngs
  _write_pngs(tmp_path / "data" / "train", images[:64])
  _write_pngs(tmp_path / "data" / "test", images[64:])
  results = experiment.train_and_evaluate(_config(tmp_path / "data"), str(tmp_path / "run"))
  assert results == {}  # The online probe and every evaluator that needs labels are left out, with a warning.
  assert "config.evals.knn (knn) skipped: the training data has no labels" in caplog.text
  out = tmp_path / "emb.npz"
  written = embed.embed(str(tmp_path / "run"), str(out), str(tmp_path / "data" / "test"))
  saved = np.load(out)
  assert saved["features"].shape == (20, 64) and np.all(saved["labels"] == -1)
  assert list(saved["files"]) == [f"{i:03d}.png" for i in range(20)]
  np.testing.assert_array_equal(saved["features"], written["features"])
  encoder, variables, preprocess = ssljax.load_encoder(str(tmp_path / "run"))
  pixels = [np.asarray(Image.open(tmp_path / "data" / "test" / name))[..., None] for name in saved["files"]]
  np.testing.assert_allclose(
    encoder.apply(variables, preprocess(pixels), train=False), saved["features"], rtol=1e-5, atol=1e-5
  )


def test_embed_reads_a_directory_as_the_run_reads_its_folders(digit_pngs, tmp_path):
  """`embed --data DIR` decodes with the run's centre crop and skips bad files when the run does."""
  images, _ = digit_pngs
  _write_pngs(tmp_path / "new", images[:4])
  (tmp_path / "new" / "broken.png").write_bytes(b"not a png")
  config = _config(tmp_path, center_crop=0.5, skip_bad_files=True)
  source, files = embed._source(config, str(tmp_path / "new"), None)
  assert list(files) == [f"{i:03d}.png" for i in range(4)]
  expected = data.preprocess([image[..., None] for image in images[:4]], config.dataset.image_size, center_crop=0.5)
  np.testing.assert_allclose(source.get(range(4))["image"], expected, atol=1 / 255)


def test_a_corrupt_image_is_named_or_skipped(digit_pngs, tmp_path, caplog):
  images, labels = digit_pngs
  _write_pngs(tmp_path / "train", images[:20], labels[:20])
  broken = tmp_path / "train" / "class_0" / "-broken.png"
  broken.write_bytes(b"not a png")
  config = _config(tmp_path).dataset
  with pytest.raises(ConfigError, match=rf"^config.dataset: cannot read image {broken} \("):
    data.load_source(config, "train")
  config.skip_bad_files = True
  source = data.load_source(config, "train")
  assert len(source) == 20 and str(broken) not in source.files
  assert "skipped 1 unreadable images (config.dataset.skip_bad_files)" in caplog.text


def test_an_image_broken_past_its_header_is_one_line_of_its_own_below_the_progress_bar(digit_pngs, tmp_path, capsys):
  """A PNG whose header reads but whose pixels are cut off is found when training first decodes it: the error is
  the last line, of its own, below the bar (as a terminal shows it), and a newline in its name is escaped."""
  images, labels = digit_pngs
  _write_pngs(tmp_path / "data" / "train", images[:64], labels[:64])
  _write_pngs(tmp_path / "data" / "test", images[64:], labels[64:])
  good = tmp_path / "data" / "train" / "class_0" / "000.png"
  broken = good.with_name("cut\noff.png")
  broken.write_bytes(good.read_bytes()[:-30])  # The header and part of the pixel data.
  good.unlink()
  config = _config(tmp_path / "data")
  flags.FLAGS.mark_as_parsed()  # `cli.run_command` reads its own flags' defaults.
  with pytest.raises(SystemExit):
    cli.run_command(lambda: experiment.train_and_evaluate(config, str(tmp_path / "run")))
  rows = [line.split("\r")[-1] for line in capsys.readouterr().err.split("\n")]  # What each terminal row shows.
  last = [row for row in rows if row.strip()][-1]
  escaped = re.escape(str(broken).replace("\n", "\\n"))
  assert re.fullmatch(rf"error: config.dataset: cannot read image {escaped} \(image file is truncated\)", last)


def test_hidden_folders_are_no_classes_and_a_mixed_layout_is_named(digit_pngs, tmp_path):
  """A flat split with a hidden folder (a notebook's checkpoints) keeps its loose images; in a labelled split a
  hidden folder is no class; class folders with images beside them are a one-line error saying what was found."""
  images, labels = digit_pngs
  _write_pngs(tmp_path / "flat" / "train", images[:10])
  (tmp_path / "flat" / "train" / ".ipynb_checkpoints").mkdir()
  config = _config(tmp_path / "flat").dataset
  flat = data.load_source(config, "train")
  assert len(flat) == 10 and flat.num_classes == 0
  _write_pngs(tmp_path / "labelled" / "train", images[:20], labels[:20])
  _write_pngs(tmp_path / "labelled" / "train" / ".git", images[:2])
  labelled = data.load_source(_config(tmp_path / "labelled").dataset, "train")
  assert labelled.classes == sorted(f"class_{c}" for c in set(labels[:20])) and len(labelled) == 20
  Image.fromarray(images[0]).save(tmp_path / "labelled" / "train" / "stray.png")
  root = tmp_path / "labelled" / "train"
  with pytest.raises(ConfigError, match=rf"^config.dataset.data_dir: {root} holds class folders \(class_0, class_1, "
                     r"class_2, ...\) and 1 images beside them \(e.g. stray.png\)"):  # fmt: skip
    data.load_source(_config(tmp_path / "labelled").dataset, "train")


def png_claiming(width: int, height: int) -> bytes:
  """A PNG file whose header claims width x height 8-bit grey pixels (and holds none)."""

  def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

  header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
  return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [100_000, 12_000])  # PIL refuses the first with a traceback, only warns at the second.
def test_an_image_header_claiming_too_many_pixels_is_named_before_training_or_skipped(digit_pngs, tmp_path, side):
  images, labels = digit_pngs
  _write_pngs(tmp_path / "train", images[:20], labels[:20])
  huge = tmp_path / "train" / "class_1" / "huge.png"
  huge.write_bytes(png_claiming(side, side))
  config = _config(tmp_path).dataset
  with pytest.raises(ConfigError, match=rf"^config.dataset: image {huge} is larger than 134,217,728 pixels"):
    data.load_source(config, "train")  # At the source's creation: before any step, any file written.
  config.skip_bad_files = True
  assert len(data.load_source(config, "train")) == 20


def test_16_bit_grayscale_pngs_are_scaled_not_clipped(tmp_path):
  """A 16-bit PNG (PIL mode I;16) holds 0..65535: it is scaled to 8 bits (PIL's own conversion clips it at 255,
  which made a mid-grey image almost white), in the folder source and in the host crops' decoder."""
  ramp = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)  # Mean 32767.5 -> 127.5 of 255.
  (tmp_path / "train").mkdir()
  Image.fromarray(ramp).save(tmp_path / "train" / "ramp.png")
  assert Image.open(tmp_path / "train" / "ramp.png").mode.startswith("I")
  config = _config(tmp_path).dataset
  config.update(image_size=16, test_split="train")
  image = data.load_source(config, "train").get(np.arange(1))["image"][0, ..., 0]
  np.testing.assert_allclose(image, np.round(ramp / 257.0) / 255.0, atol=1e-6)
  crop = data.decode_crop_resize(str(tmp_path / "train" / "ramp.png"), (0, 0, 16, 16), 16, channels=1)
  np.testing.assert_allclose(crop[..., 0], np.round(ramp / 257.0), atol=1)


def test_a_failing_evaluator_loses_no_other_result(tmp_path, capsys):
  """t-SNE cannot embed a one-image test split; the kNN evaluation still runs, results.json holds it, and the run
  ends with one line naming the evaluator that failed. Each evaluator is announced and timed as it runs."""
  rng = np.random.default_rng(0)
  np.savez(tmp_path / "train.npz", images=rng.integers(0, 256, (64, 8, 8, 1), np.uint8), labels=np.arange(64) % 4)
  np.savez(tmp_path / "test.npz", images=rng.integers(0, 256, (1, 8, 8, 1), np.uint8), labels=np.array([2]))
  config = simclr_digits.get_config("runlocal")
  config.dataset.update(name="npz", data_dir=str(tmp_path))
  config.evals = {"knn": {**config.evals.knn, "every_steps": 0}, "embedding": config.evals.embedding}
  config.update(total_steps=1, eval_baselines=())
  workdir = tmp_path / "run"
  with pytest.raises(ConfigError, match=r"^config.evals.embedding \(embedding_plot\) failed: \w+: .*perplexity"):
    experiment.train_and_evaluate(config, str(workdir))
  results = json.loads((workdir / "results.json").read_text())
  assert results and all(key.startswith("knn/ssl/") for key in results), results
  stderr = capsys.readouterr().err
  assert re.search(r"features \(ssl\) of the training split: +\d+%\|.*\| \d+/1 \[", stderr)  # Its progress bar.
  lines = [line for line in stderr.splitlines() if line.startswith("evaluator ")]
  assert lines[0] == "evaluator 1 of 2: embedding (embedding_plot)" and lines[2] == "evaluator 2 of 2: knn (knn)"
  assert lines[1].startswith("evaluator embedding: ") and re.fullmatch(r"evaluator knn: \d+\.\d s", lines[3])


def test_npz_arrays_with_and_without_labels(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
  np.savez(tmp_path / "train.npz", images=images, labels=np.array([0, 1, 2, 0, 1, 2]))
  np.savez(tmp_path / "test.npz", images=images.astype(np.float32) / 255)
  config = simclr_digits.get_config().dataset
  config.update(name="npz", data_dir=str(tmp_path), image_size=8, channels=3)
  train = data.load_source(config, "train")
  np.testing.assert_allclose(train.get(np.arange(6))["image"], images / 255, rtol=1e-6)
  assert train.num_classes == 3
  test = data.load_source(config, "test")
  assert test.num_classes == 0 and np.all(test.labels == -1)
  np.savez(tmp_path / "bad.npz", images=images[0])
  with pytest.raises(ConfigError, match=r"bad.npz 'images' must be \[N, H, W, C\], not shape \(8, 8, 3\)"):
    data.load_source(config, "bad")


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format=fmt, **options)
  return buffer.getvalue()


def _ramp(height=60, width=80) -> np.ndarray:
  """uint8 [height, width, 3]: red grows along x, green along y (0 to 200), blue constant."""
  y, x = np.mgrid[:height, :width]
  return np.stack([x * 200 // width, y * 200 // height, np.full_like(x, 90)], -1).astype(np.uint8)


def test_bilinear_crops_equal_tf_image_resize_and_area_crops_the_block_means():
  """`resize="bilinear"` samples the box at half-pixel centres without antialiasing, as tf.image.resize (= jax's
  scale_and_translate, linear, no antialias) does, sub-pixel box edges included, and up-samples clamping to the
  box's edge; `resize="area"` averages blocks."""
  import jax

  pixels = np.random.default_rng(0).integers(0, 256, (50, 70, 3)).astype(np.uint8)
  for box, size in (((5, 7, 30, 40), 16), ((3.25, 10.5, 37.5, 41.75), 12)):
    top, left, height, width = box
    scale = np.array([size / height, size / width])
    reference = jax.image.scale_and_translate(
      pixels.astype(np.float32), (size, size, 3), (0, 1), scale, -np.array([top, left]) * scale, "linear", False
    )
    out = data.decode_crop_resize(pixels, box, size)
    assert out.dtype == np.uint8 and out.shape == (size, size, 3)
    np.testing.assert_allclose(out, np.asarray(reference), atol=1.0, err_msg=str(box))
  # Up-sampling clamps to the box's edge (tf.image.resize of the crop does), a fractional box to the pixels it
  # touches: jax's scale_and_translate of those pixels alone renormalises its weights at their edge, the same.
  for box in ((5, 7, 30, 40), (3.25, 10.5, 7.5, 9.75)):
    top, left, height, width = box
    region = pixels[int(top) : int(np.ceil(top + height)), int(left) : int(np.ceil(left + width))].astype(np.float32)
    scale = np.array([64 / height, 64 / width])
    offset = -np.array([top - int(top), left - int(left)]) * scale
    reference = jax.image.scale_and_translate(region, (64, 64, 3), (0, 1), scale, offset, "linear", False)
    out = np.zeros((64, 64, 3), np.uint8)
    assert data.decode_crop_resize(pixels, box, 64, out=out) is out  # Written in place (HostCrops' batch).
    np.testing.assert_allclose(out, np.asarray(reference), atol=1.0, err_msg=str(box))
  blocks = pixels[8:40, 4:68].reshape(8, 4, 8, 8, 3).mean(axis=(1, 3))
  np.testing.assert_allclose(data.decode_crop_resize(pixels, (8, 4, 32, 64), 8, resize="area"), blocks, atol=0.51)


@pytest.mark.parametrize(
  "mode", ["RGB JPEG", "progressive JPEG", "L JPEG", "CMYK JPEG", "RGBA PNG", "P PNG", "I;16 PNG", "RGB PNG"]
)
def test_every_image_mode_decodes_as_pil_reads_it_with_the_crop_folded_into_a_jpeg_decode(mode):
  """Each mode gives the crop of what PIL decodes (libjpeg-turbo through simplejpeg for plain JPEGs, PIL for the
  rest), converted as `data._convert` does (16-bit scaled, not clipped), in gray and RGB. A JPEG crop much larger
  than its output is decoded at a DCT scale (1/2, 1/4 or 1/8) and stays within JPEG-scaling error of the full decode."""
  kind, fmt = mode.split()
  if kind == "I;16":
    image = Image.fromarray((np.mgrid[:60, :80][0] * 1000).astype(np.uint16))
  else:
    image = Image.fromarray(_ramp()).convert("RGB" if kind == "progressive" else kind)
  encoded = _encode(image, fmt, **({"quality": 95, "progressive": kind == "progressive"} if fmt == "JPEG" else {}))
  for channels in (1, 3):
    full = np.asarray(data._convert(Image.open(io.BytesIO(encoded)), channels))
    full = full[..., None] if channels == 1 else full
    box = (10, 20, 40, 40)  # Output = box size: decoded at full scale, no resampling.
    np.testing.assert_allclose(data.decode_crop_resize(encoded, box, 40, channels), full[10:50, 20:60], atol=1)
    scaled = data.decode_crop_resize(encoded, (0, 0, 60, 80), 16, channels)  # A JPEG decodes at 1/2 scale.
    reference = data.decode_crop_resize(full, (0, 0, 60, 80), 16, channels)
    assert np.abs(scaled.astype(int) - reference).mean() < 3, (mode, channels)


def test_a_jpeg_decoded_at_a_reduced_scale_keeps_its_crop_in_place():
  """At 1/2, 1/4 and 1/8 scale, a box at the far edges of an image whose sides are no multiple of 8 gives the crop
  of the full decode: full coordinates map by the exact DCT scale (a decoded pixel covers 1 / scale full pixels),
  not by the decoded sizes' ratio, which would slide the box by up to 7 full pixels (a ramp's 5 grey levels)."""
  y, x = np.mgrid[:245, :331]
  ramp = np.stack([x * 255 // 330, y * 255 // 244, np.full_like(x, 90)], -1).astype(np.uint8)
  encoded = _encode(Image.fromarray(ramp), "JPEG", quality=98)
  full = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))
  for box in ((53, 139, 192, 192), (149, 235, 96, 96), (197, 283, 48, 48)):  # 1/8, 1/4, 1/2 for 24 px.
    scaled = data.decode_crop_resize(encoded, box, 24)
    reference = data.decode_crop_resize(full, box, 24)
    assert np.abs(scaled.astype(float) - reference).mean() < 1.0, box


def test_jpeg_decode_with_the_crop_folded_in_keeps_only_the_box():
  """A crop of the whole image keeps its border, which has its own colour (red); an inner crop has none of it,
  at any DCT scale the decode picks."""
  image = _ramp(300, 400)
  image[:12], image[-12:], image[:, :12], image[:, -12:] = (255, 0, 0), (255, 0, 0), (255, 0, 0), (255, 0, 0)
  encoded = _encode(Image.fromarray(image), "JPEG", quality=95)
  for size in (32, 160):
    whole = data.decode_crop_resize(encoded, (0, 0, 300, 400), size)
    inner = data.decode_crop_resize(encoded, (50, 60, 200, 280), size)
    assert whole[0, 0, 0] > 200 and whole[0, 0, 1] < 60  # The red border survives a full-image crop.
    assert not np.any((inner[..., 0] > 200) & (inner[..., 1] < 60))


def test_a_truncated_jpeg_is_named_when_a_host_crop_decodes_it_or_skipped(tmp_path, caplog):
  """Its header reads, so the folder takes it; the host crop that decodes it names it in one line. With
  skip_bad_files the folder decodes every file first and leaves it out."""
  from ssljax.augment import AugmentConfig

  (tmp_path / "train").mkdir()
  encoded = _encode(Image.fromarray(_ramp()), "JPEG", quality=95)
  (tmp_path / "train" / "whole.jpg").write_bytes(encoded)
  cut = tmp_path / "train" / "cut.jpg"
  cut.write_bytes(encoded[: len(encoded) // 2])
  views = (AugmentConfig(size=8),)
  crops = data.HostCrops(data.FolderSource(str(tmp_path), "train", 8, 3), views, seed=0, channels=3)
  with pytest.raises(ConfigError, match=rf"^config.dataset: cannot read image {cut} \(image file is truncated"):
    crops.get_for_step(np.arange(2), 0)
  folder = data.FolderSource(str(tmp_path), "train", 8, 3, skip_bad_files=True)
  crops = data.HostCrops(folder, views, seed=0, channels=3)
  assert folder.files == [str(tmp_path / "train" / "whole.jpg")]
  assert crops.get_for_step(np.arange(1), 0)["crops"][0].shape == (1, 8, 8, 3)
  assert "skipped 1 unreadable images" in caplog.text
