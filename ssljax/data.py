"""Datasets by name and a step-indexed, deterministic input pipeline.

A dataset is a random-access source (`len`, `get(indices)` -> {"image": float32 [B, H, W, C] in [0, 1],
"label": int32 [B], -1 when unlabelled}), chosen by `config.dataset.name`:
- "digits": scikit-learn's bundled 8x8 handwritten digits (real data, no download) with a fixed held-out split;
- "sample_photos": crops of scikit-learn's two bundled colour photos (`_sample_photos`), colour with no download;
- "folder": your images, `data_dir/SPLIT/` with PNG/JPEG files flat (unlabelled) or in class subdirectories;
- "npz": your arrays, `data_dir/SPLIT.npz` with "images" [N, H, W, C] and optional "labels" [N];
- "tar": image-text pairs in webdataset-style shards, `data_dir/SPLIT/*.tar` (`TarShardSource`);
- any other name: `tfds.data_source(name)` (ArrayRecord, random access, no TensorFlow at run time).
With `config.dataset.captions = "label_templates"` every example also carries "text", int32 [B, L] tokens of a
synthetic caption of its label (`CaptionedSource`), for image-text methods on labelled image datasets.

Text datasets give {"text": int32 [B, L] packed token sequences (`text.pack`), "label"} (`TokenSource`):
- "python_docs": the Python language reference's topics (ships with Python; `text.python_docs`), labelled by topic;
- a tfds dataset with `config.dataset.text_feature` (e.g. lm1b's "text"): its documents tokenised once, joined and
  cut into rows of `config.text.context_length`, cached as a token file beside the dataset.

The batch of step s is a pure function of (seed, s): epoch e = s // steps_per_epoch reads a permutation drawn
from (seed, e). Resuming at step s therefore replays exactly the batches of an uninterrupted run, with no
iterator state to checkpoint. Each process reads only its own contiguous slice of every global batch. Batches are
read by grain (`load_batches`): chunks of `LOADER_CHUNK` examples in the threads of the training process or in
worker processes, joined in order.
"""

import concurrent.futures
import dataclasses
import functools
import glob
import itertools
import math
import os
import queue
import re
import tarfile
import threading
import zipfile

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags, logging

from ssljax.config import ConfigError, require_choice

DIGITS_TEST_SIZE = 360  # 20% of the 1797 digits, held out with a fixed permutation.


@dataclasses.dataclass(frozen=True)
class ArraySource:
  """An in-memory dataset: images float32 [N, H, W, C] in [0, 1], labels int32 [N]."""

  images: np.ndarray
  labels: np.ndarray
  num_classes: int

  def __len__(self):
    return len(self.images)

  def get(self, indices):
    return {"image": self.images[indices], "label": self.labels[indices]}


MIN_TOPIC_ROWS = 10  # python_docs: topics with fewer training rows share the class "other".


@dataclasses.dataclass(frozen=True)
class TokenSource:
  """Packed token sequences: tokens int [N, L] (PAD = 0 after a text's end), labels int32 [N] (-1: none)."""

  tokens: np.ndarray
  labels: np.ndarray
  num_classes: int
  class_names: tuple | None = None
  _counts: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)  # One pass per vocabulary.

  def __len__(self):
    return len(self.tokens)

  def get(self, indices):
    return {"text": np.asarray(self.tokens[indices], np.int32), "label": self.labels[indices]}

  def token_counts(self, vocab_size: int) -> np.ndarray:
    """int64 [vocab_size]: how often each token occurs (PAD included), the unigram statistics; counted once (a
    memory-mapped corpus is read whole) and shared by the method and the evaluators."""
    if vocab_size not in self._counts:
      counts = np.zeros(vocab_size, np.int64)
      for start in range(0, len(self.tokens), 65536):
        counts += np.bincount(np.asarray(self.tokens[start : start + 65536]).reshape(-1), minlength=vocab_size)
      self._counts[vocab_size] = counts
    return self._counts[vocab_size]


def is_text(dataset_config) -> bool:
  """Whether `config.dataset` names a text dataset (examples are token sequences, not images)."""
  return dataset_config.name == "python_docs" or dataset_config.get("text_feature") is not None


def token_counts(source, config):
  """A text source's unigram counts over `config.text`'s vocabulary (None for images)."""
  if not isinstance(source, TokenSource):
    return None
  from ssljax import text

  return source.token_counts(text.vocab_size(text.load_tokenizer(config.text.tokenizer)))


def model_input(batch: dict):
  """What an encoder reads from a batch: its images, or its tokens for text data."""
  return batch["image"] if "image" in batch else batch["text"]


def _python_docs(split: str, length: int, tokenizer) -> TokenSource:
  """The embedded text corpus packed into rows of `length`, labelled by topic: the topics with at least
  MIN_TOPIC_ROWS training rows are classes (by name), the others share the last class, "other"."""
  from ssljax import text

  if split not in ("train", "test"):
    raise ConfigError(f"config.dataset: python_docs has splits 'train' and 'test', not {split!r}")
  topics = [topic for topic, _ in text.python_docs("train")]
  train_rows, train_owners = text.pack([body for _, body in text.python_docs("train")], length, tokenizer)
  per_topic = np.bincount(train_owners, minlength=len(topics))
  named = [t for t, n in zip(topics, per_topic, strict=True) if n >= MIN_TOPIC_ROWS]
  class_of = np.array([named.index(t) if t in named else len(named) for t in topics], np.int32)
  rows, owners = (
    (train_rows, train_owners)
    if split == "train"
    else text.pack([body for _, body in text.python_docs(split)], length, tokenizer)
  )
  return TokenSource(rows, class_of[owners], len(named) + 1, (*named, "other"))


def _tfds_text(dataset_config, split: str, length: int, tokenizer, tokenizer_name: str) -> TokenSource:
  """A tfds dataset's `text_feature` (one string per example) tokenised, each text ending in EOS, joined and cut
  into rows of `length` (the last partial row dropped). The rows are cached once as
  DATA_DIR/ssljax_tokens/NAME-SPLIT-...npy (uint16 when the vocabulary fits; written whole by process 0) and
  memory-mapped afterwards."""
  import hashlib

  import tensorflow_datasets as tfds

  from ssljax import paths, text

  name, feature = dataset_config.name, dataset_config.text_feature
  try:
    builder = tfds.builder(name, data_dir=dataset_config.get("data_dir"))
  except tfds.core.registered.DatasetNotFoundError:
    raise ConfigError(f"config.dataset.name: unknown dataset {name!r} (not 'python_docs' and not in tfds)") from None
  if feature.split("/")[0] not in builder.info.features:
    raise ConfigError(
      f"config.dataset.text_feature: {name!r} has no feature {feature!r} (it has {sorted(builder.info.features)})"
    )
  root = _data_dir_root(builder, name)
  max_documents = dataset_config.get("max_documents") or 0
  digest = hashlib.sha1(f"{tokenizer.to_str()}|{feature}|{max_documents}".encode()).hexdigest()[:12]
  cache = os.path.join(root, "ssljax_tokens", f"{name.replace('/', '_')}-{split}-L{length}-{digest}.npy")
  if not os.path.exists(cache):
    split_key = "test_split" if split == dataset_config.get("test_split") else "train_split"
    try:
      documents = tfds.data_source(name, split=split, data_dir=dataset_config.get("data_dir"), download=False)
    except Exception as error:  # tfds's errors name neither the key nor the fix: diagnose.
      raise _unreadable_split(builder, name, split, split_key) or error from None
    count = min(len(documents), max_documents) if max_documents else len(documents)
    del documents
    logging.info("tokenising %d documents of %s %s with %s (once)", count, name, split, tokenizer_name)
    ids = []
    texts = text.tfds_texts(name, feature, dataset_config.get("data_dir"), split, count)
    for chunk in iter(lambda: list(itertools.islice(texts, 4096)), []):
      ids.extend(np.asarray(e.ids, np.int32) for e in tokenizer.encode_batch(chunk))
    stream = np.concatenate(ids) if ids else np.zeros(0, np.int32)
    rows = stream[: len(stream) // length * length].reshape(-1, length)
    rows = rows.astype(np.uint16 if text.vocab_size(tokenizer) <= 2**16 else np.int32)
    if jax.process_index() != 0:  # Process 0 writes the cache; the others keep what they tokenised.
      return TokenSource(rows, np.full(len(rows), -1, np.int32), 0)
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    paths.write_atomic(paths.resolve(cache), _npy_bytes(rows))
  rows = np.load(cache, mmap_mode="r")
  return TokenSource(rows, np.full(len(rows), -1, np.int32), 0)


def _npy_bytes(array: np.ndarray) -> bytes:
  import io

  buffer = io.BytesIO()
  np.save(buffer, array)
  return buffer.getvalue()


def load_text_source(dataset_config, split: str, text_config):
  """The split `split` of a text dataset (`is_text`), tokenised by `config.text.tokenizer` into rows of
  `config.text.context_length`."""
  from ssljax import text

  if text_config is None:
    raise ConfigError("config.text: a text dataset needs a tokenizer and a context_length")
  tokenizer = text.load_tokenizer(text_config.tokenizer)
  length = text_config.context_length
  if dataset_config.name == "python_docs":
    source = _python_docs(split, length, tokenizer)
  else:
    source = _tfds_text(dataset_config, split, length, tokenizer, text_config.tokenizer)
  if len(source) == 0:
    raise ConfigError(f"config.dataset: {dataset_config.name!r} split {split!r} has no full row of {length} tokens")
  return source


class TfdsSource:
  """A tfds ArrayRecord split read by index; images are resized (shorter side to size / center_crop) and
  centre-cropped to `size` (`center_crop` 0.875: the papers' ImageNet evaluation images).

  The dataset must be prepared (`python -m ssljax.prepare NAME`); anything else is a one-line ConfigError naming
  the key and the directory searched. `split_key` names the config key the split came from."""

  def __init__(
    self,
    name: str,
    split: str,
    size: int,
    data_dir: str | None,
    split_key: str = "train_split",
    center_crop=1.0,
    caption_feature: str | None = None,
  ):
    import tensorflow_datasets as tfds  # Imported here: only tfds datasets need it.

    try:
      builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
      known = "not 'digits', 'sample_photos' or in tfds"
      raise ConfigError(f"config.dataset.name: unknown dataset {name!r} ({known})") from None
    self.data_dir = _data_dir_root(builder, name)  # Where tfds found it (data_dir, $TFDS_DATA_DIR or its default).
    features = builder.info.features
    self._caption_path = caption_feature.split("/") if caption_feature else None
    if self._caption_path and self._caption_path[0] not in features:
      raise ConfigError(
        f"config.dataset.caption_feature: {name!r} has no feature {caption_feature!r} (it has {sorted(features)})"
      )
    if "image" not in features or ("label" not in features and not self._caption_path):
      raise ConfigError(
        f"config.dataset.name: {name!r} has no 'image' and 'label' features (it has {sorted(features)})"
      )
    try:
      self._source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as error:  # tfds's errors name neither the key nor the fix: diagnose.
      raise _unreadable_split(builder, name, split, split_key) or error from None
    labelled = "label" in features
    self.num_classes = features["label"].num_classes if labelled else 0
    self.class_names = tuple(n.replace("_", " ") for n in features["label"].names) if labelled else None
    self._size, self._center_crop = size, center_crop
    self._encoded_source = None  # Made here, not on first use: the loader's threads would race to make it.
    if isinstance(features["image"], tfds.features.Image):  # Encoded JPEG/PNG: `encoded` reads them undecoded.
      decoders = {"image": tfds.decode.SkipDecoding()}
      self._encoded_source = tfds.data_source(name, split=split, data_dir=data_dir, download=False, decoders=decoders)

  def __len__(self):
    return len(self._source)

  def encoded(self, index: int):
    """(the full image of example `index`: its JPEG/PNG bytes, or uint8 [H, W, C] when stored decoded, label)."""
    record = (self._encoded_source or self._source)[index]
    return record["image"], int(record["label"])

  def get(self, indices):
    records = [self._source[int(i)] for i in indices]  # In one of the loader's threads (`load_batches`).
    images = preprocess([np.asarray(r["image"]) for r in records], self._size, self._center_crop)
    batch = {"image": images, "label": np.array([r.get("label", -1) for r in records], np.int32)}
    if self._caption_path:  # Every example's captions, a list of strings (not an array: `CaptionedSource` reads it).
      batch["captions"] = [feature_texts(r, self._caption_path) for r in records]
    return batch


def feature_texts(record, path) -> list[str]:
  """The strings at `path` (feature names) of a tfds record: one text, or a sequence of them (COCO's captions)."""
  value = record
  for key in path:
    value = value[key]
  values = [value] if isinstance(value, bytes | str) else list(np.asarray(value).reshape(-1))
  return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _data_dir_root(builder, name: str) -> str:
  """The data dir holding `name` (what `config.dataset.data_dir` takes): builder.data_dir is
  ROOT/NAME[/CONFIG]/VERSION (a builder read from files reports its version directory as its root)."""
  path = os.path.normpath(str(builder.data_dir))
  while os.path.basename(path) != name and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  return os.path.dirname(path) if os.path.basename(path) == name else str(builder.data_dir_root)


def _unreadable_split(builder, name: str, split: str, split_key: str) -> ConfigError | None:
  """Why tfds cannot read `split` of `builder` as a data source, as a one-line ConfigError (None: unknown)."""
  import tensorflow_datasets as tfds

  where = _data_dir_root(builder, name)
  prepare = f"python -m ssljax.prepare {name} --data_dir {where}"
  if not builder.is_prepared():
    return ConfigError(f"config.dataset.data_dir: {name!r} is not prepared in {where} (run: {prepare})")
  file_format = builder.info.file_format
  if file_format != tfds.core.FileFormat.ARRAY_RECORD:
    kind = getattr(file_format, "value", file_format)
    return ConfigError(
      f"config.dataset.data_dir: {name!r} in {builder.data_dir} is {kind}, not the ArrayRecord ssljax reads "
      f"(run: {prepare})"
    )
  try:
    builder.info.splits[split]
  except (KeyError, ValueError):
    return ConfigError(
      f"config.dataset.{split_key}: {name!r} has no split {split!r} (it has {sorted(builder.info.splits)})"
    )
  return None


def _open(encoded):
  """A PIL image of JPEG/PNG bytes, an image file's path, or a uint8 [H, W, C] array."""
  import io

  from PIL import Image

  if isinstance(encoded, np.ndarray):
    return Image.fromarray(encoded[..., 0] if encoded.shape[-1] == 1 else encoded)
  return Image.open(io.BytesIO(encoded) if isinstance(encoded, bytes) else encoded)


def _convert(image, channels: int):
  """A PIL image as 8-bit "L" (channels 1) or "RGB". 16-bit grayscale (PNG: mode "I;16", or "I" in older PIL) is
  scaled to 8 bits first: PIL's own conversion clips it at 255, which turns nearly every pixel white."""
  from PIL import Image

  if image.mode.startswith("I;16") or image.mode == "I":
    pixels = np.asarray(image, np.float64) / 257.0  # 65535 -> 255.
    image = Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8), "L")
  return image.convert("L" if channels == 1 else "RGB")


def image_size(encoded) -> tuple[int, int]:
  """(height, width) of an image (as `decode_crop_resize` takes it), from its header alone."""
  if isinstance(encoded, np.ndarray):
    return encoded.shape[:2]
  if isinstance(encoded, bytes) and encoded[:2] == b"\xff\xd8":  # JPEG: libjpeg-turbo reads the header alone.
    import simplejpeg

    try:
      return tuple(simplejpeg.decode_jpeg_header(encoded)[:2])
    except ValueError:  # Left to PIL, as the decode does.
      pass
  with _open(encoded) as image:
    return image.size[1], image.size[0]


HOST_RESIZES = ("bilinear", "area")


def decode_crop_resize(
  encoded, box, size: int, channels: int = 3, resize: str = "bilinear", name: str | None = None, out=None
) -> np.ndarray:
  """uint8 [size, size, channels]: the crop `box` = (top, left, height, width), in pixels of the full image, of
  `encoded` (JPEG/PNG bytes, a file's path or a uint8 array), resized to size x size by `resize`:
  - "bilinear": `tf.image.resize`'s default (half-pixel centres, no antialiasing), what the reference tf.data
    pipelines (SimCLR's, BYOL's) apply to their crops; sub-pixel box edges are kept (OpenCV's warpAffine);
  - "area": antialiased, a box filter (OpenCV's INTER_AREA, the box rounded to whole pixels).
  A JPEG is decoded by libjpeg-turbo (simplejpeg) at the smallest DCT scale (1/8, 1/4, 1/2, 1) that keeps the box
  at least `size` pixels on each side: a small crop target decodes a fraction of the pixels (what
  tf.image.decode_and_crop_jpeg saves by decoding only the crop's rows). A reduced scale averages each 2 x 2 to
  8 x 8 block, so such a crop (then shrunk by less than 2x) is a little smoother than tf.data's full-scale one.
  What that path does not read (PNG, CMYK or other odd JPEGs, 16-bit, palette) PIL decodes. An image that cannot
  be read is a one-line ConfigError naming it: its path, else `name`. `out` (uint8 [size, size, channels],
  C-contiguous) receives the crop if given."""
  from PIL import Image

  try:
    pixels, scale = _decode_for_box(encoded, box, size, channels)
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:  # Truncated, corrupt, huge.
    raise _bad_image(encoded if isinstance(encoded, str) else name or "(encoded bytes)", error) from None
  region = tuple(float(x) * scale for x in box)
  if out is None:
    out = np.empty((size, size, channels), np.uint8)
  _resize_box(pixels, region, resize, out.reshape(out.shape[:2]) if channels == 1 else out)
  return out


def _decode_for_box(encoded, box, size: int, channels: int):
  """(uint8 [h, w] or [h, w, channels] pixels, the scale they were decoded at): `encoded` decoded at the smallest
  scale that keeps `box` at least `size` pixels on each side. A decoded pixel covers exactly 1 / scale full
  pixels (libjpeg's last row and column may be partial), so full coordinates map by the scale, not by the sizes'
  ratio."""
  if isinstance(encoded, np.ndarray):
    if encoded.dtype == np.uint8 and encoded.shape[-1] == channels:
      return encoded, 1.0
    with _open(encoded) as image:
      return np.asarray(_convert(image, channels)), 1.0
  if isinstance(encoded, str):
    with open(encoded, "rb") as f:
      encoded = f.read()
  _, _, height, width = box
  if encoded[:2] == b"\xff\xd8":  # JPEG.
    import simplejpeg

    try:
      full_height, full_width, colorspace, _ = simplejpeg.decode_jpeg_header(encoded)
      if colorspace not in ("CMYK", "YCCK"):
        # Scales 1/2, 1/4 and 1/8 only: libjpeg-turbo's 5/8 to 7/8 decode slower than a full one (measured).
        need = size / max(min(height, width), 1)
        scale = next((s for s in (0.125, 0.25, 0.5) if s >= need), 1.0)
        pixels = simplejpeg.decode_jpeg(
          encoded,
          "GRAY" if channels == 1 else "RGB",
          min_height=math.ceil(full_height * scale),
          min_width=math.ceil(full_width * scale),
        )
        if pixels.shape[:2] != (math.ceil(full_height * scale), math.ceil(full_width * scale)):
          scale = pixels.shape[1] / full_width  # Not a scale asked for (never seen): the sizes' ratio.
        return pixels, scale
    except ValueError:  # libjpeg-turbo's strict mode refuses what PIL may still read (or name as unreadable).
      pass
  with _open(encoded) as image:
    full_width, full_height = image.size
    # PIL's draft mode: the largest DCT reduction (1/2, 1/4, 1/8) keeping at least the requested size.
    image.draft(
      "L" if channels == 1 else "RGB", (full_width * size // max(width, 1), full_height * size // max(height, 1))
    )
    reduction = max(1, round(full_width / image.size[0]))  # 1, 2, 4 or 8.
    return np.asarray(_convert(image, channels)), 1.0 / reduction


@functools.cache
def _opencv():
  import cv2

  cv2.setNumThreads(1)  # Each of the loader's threads resizes its own images: no nested thread pool.
  return cv2


def _resize_box(pixels: np.ndarray, box, resize: str, out: np.ndarray):
  """Writes the region `box` (top, left, height, width; fractional pixels) of `pixels` resized into `out` (uint8
  [size, size] or [size, size, C], as many channels as `pixels`)."""
  cv2 = _opencv()
  size = out.shape[0]
  pixels = pixels[..., 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels
  top, left, height, width = box
  if resize == "bilinear":
    # Only the pixels under the box: the border is replicated from the box's edge (tf.image.resize of the crop
    # clamps to it too), not read from beyond it.
    row, col = int(top), int(left)
    region = pixels[row : max(row + 1, math.ceil(top + height)), col : max(col + 1, math.ceil(left + width))]
    step_y, step_x = height / size, width / size
    # Output pixel centre x + 1/2 samples the box at left + (x + 1/2) * step_x (both in pixel-centre coordinates).
    inverse = np.array(
      [[step_x, 0.0, left - col + 0.5 * step_x - 0.5], [0.0, step_y, top - row + 0.5 * step_y - 0.5]], np.float64
    )
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    result = cv2.warpAffine(region, inverse, (size, size), dst=out, flags=flags, borderMode=cv2.BORDER_REPLICATE)
  else:
    row, col, bottom, right = (int(round(x)) for x in (top, left, top + height, left + width))
    region = pixels[row : max(row + 1, bottom), col : max(col + 1, right)]
    result = cv2.resize(region, (size, size), dst=out, interpolation=cv2.INTER_AREA)
  if result.ctypes.data != out.ctypes.data:  # OpenCV allocates anew when `out` does not fit: never leave it unset.
    raise ValueError(f"resized {result.shape} {result.dtype} pixels do not fit the output {out.shape} {out.dtype}")


def preprocess(images, size: int, center_crop: float = 1.0) -> np.ndarray:
  """uint8 images ([N, H, W, C] or a list of [H, W, C] of any sizes) -> float32 [N, size, size, C] in [0, 1]:
  the shorter side resized to size / center_crop (bicubic), centre-cropped; what a folder, npz or tfds dataset
  gives."""
  return np.stack([_resize_and_center_crop(image, size, center_crop) for image in images]).astype(np.float32) / 255.0


def _resize_and_center_crop(image: np.ndarray, size: int, fraction: float = 1.0) -> np.ndarray:
  """uint8 [H, W, C] -> [size, size, C]: bicubic resize of the shorter side to size / fraction, then the centre
  size x size crop (fraction 0.875: 224 px out of 256, the papers' ImageNet evaluation images); an image already
  size x size with fraction 1 is returned as it is."""
  from PIL import Image

  height, width = image.shape[:2]
  if (height, width) == (size, size) and fraction == 1.0:
    return image
  scale = round(size / fraction) / min(height, width)
  new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
  squeeze = image.shape[2] == 1
  pil = Image.fromarray(image[..., 0] if squeeze else image).resize((new_w, new_h), Image.BICUBIC)
  out = np.asarray(pil)
  top, left = (new_h - size) // 2, (new_w - size) // 2
  out = out[top : top + size, left : left + size]
  return out[..., None] if squeeze else out


@dataclasses.dataclass(frozen=True)
class SubsetSource:
  """The examples `indices` of `source` (e.g. a labelled subset for fine-tuning), as a source of its own;
  `labels` ([len(indices)]) replace theirs (self-training's pseudo-labels)."""

  source: object
  indices: np.ndarray
  labels: np.ndarray | None = None

  @property
  def num_classes(self) -> int:
    return self.source.num_classes

  def __len__(self):
    return len(self.indices)

  def get(self, indices):
    batch = self.source.get(self.indices[indices])
    return batch if self.labels is None else {**batch, "label": self.labels[indices]}

  def encoded(self, index: int):
    """(the full image of example `index`, label), for `HostCrops` (of a source that has full images)."""
    image, label = self.source.encoded(int(self.indices[index]))
    return image, label if self.labels is None else int(self.labels[index])


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


MAX_IMAGE_PIXELS = 2**27  # ~134 Mpx (11,585 px square): above any camera's; a header claiming more is refused.


def _bad_image(path: str, error: Exception | None) -> ConfigError:
  """The one-line error for an image file that cannot be read (`error`) or is too large (None, or PIL's
  DecompressionBombError)."""
  from PIL import Image

  if error is None or isinstance(error, Image.DecompressionBombError):
    return ConfigError(f"config.dataset: image {path} is larger than {MAX_IMAGE_PIXELS:,} pixels (a bad header?)")
  return ConfigError(f"config.dataset: cannot read image {path} ({' '.join(str(error).split())})")


def _open_checked(path: str):
  """PIL's lazy image of the file at `path` (its header read), or a one-line ConfigError naming the file when it is
  no readable PNG / JPEG or claims more than MAX_IMAGE_PIXELS pixels (PIL itself refuses only past ~179 Mpx, with
  a traceback)."""
  from PIL import Image

  try:
    image = Image.open(path)
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
    raise _bad_image(path, error) from None
  if image.size[0] * image.size[1] > MAX_IMAGE_PIXELS:
    image.close()
    raise _bad_image(path, None)
  return image


def check_image_header(path: str) -> tuple[int, int]:
  """(width, height) of an image file from its header alone (see `_open_checked` for the errors)."""
  with _open_checked(path) as image:
    return image.size


def _decode(path: str, size: int, channels: int, center_crop: float = 1.0) -> np.ndarray:
  """uint8 [size, size, channels]: the image file at `path`, its shorter side resized to size / center_crop,
  centre-cropped. An unreadable or oversized file is a one-line ConfigError naming it."""
  try:
    with _open_checked(path) as image:  # One open: the header check and the decode share it.
      short = round(size / center_crop)  # A JPEG decodes at 1/2-1/8 scale while still >= that.
      image.draft("L" if channels == 1 else "RGB", (short, short))
      pixels = np.asarray(_convert(image, channels))
  except (OSError, ValueError, SyntaxError) as error:  # PIL: truncated files, bad data past the header.
    if isinstance(error, ConfigError):
      raise
    raise _bad_image(path, error) from None
  return _resize_and_center_crop(pixels[..., None] if pixels.ndim == 2 else pixels, size, center_crop)


class FolderSource:
  """Your own images: `data_dir/SPLIT/` holding PNG/JPEG files, either flat (unlabelled) or in one subdirectory
  per class (ImageNet layout; classes numbered in the sorted order of the training split's subdirectories).
  Decoded on the host (in the loader's threads, `load_batches`), resized (shorter side to size / center_crop) and
  centre-cropped to `size`.

  Attributes: files (paths, sorted), labels (int32, -1 when unlabelled), classes (names), num_classes (0 when
  unlabelled), data_dir."""

  def __init__(
    self, data_dir, split: str, size: int, channels: int, classes=None, skip_bad_files=False, center_crop=1.0
  ):
    if not data_dir:
      raise ConfigError("config.dataset.data_dir: a 'folder' dataset needs the directory holding its splits")
    root = os.path.join(data_dir, split)
    if not os.path.isdir(root):
      raise ConfigError(f"config.dataset.data_dir: {root} does not exist (one directory per split: train/, test/)")
    subdirs = _class_dirs(root)
    self.classes = list(classes if classes is not None else subdirs)
    unknown = sorted(set(subdirs) - set(self.classes))
    if unknown:
      raise ConfigError(f"config.dataset.data_dir: {root} has classes {unknown} that the training split has not")
    loose = _images_in(root, "")
    if subdirs and loose:
      raise ConfigError(
        f"config.dataset.data_dir: {root} holds class folders ({', '.join(subdirs[:3])}"
        f"{', ...' if len(subdirs) > 3 else ''}) and {len(loose)} images beside them (e.g. {loose[0]}): put every"
        " image in a class folder (labelled) or none in any (unlabelled)"
      )
    if self.classes:
      found = [
        (os.path.join(root, c, f), i) for i, c in enumerate(self.classes) if c in subdirs for f in _images_in(root, c)
      ]
    else:
      found = [(os.path.join(root, f), -1) for f in loose]
    if skip_bad_files:
      found = self._readable(found, size, channels)
    else:  # Every header now (cheap), so that a bad file stops the run before it writes anything, not mid-training.
      with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(check_image_header, [path for path, _ in found]))
    self.files = [f for f, _ in found]
    self.labels = np.array([label for _, label in found], np.int32)
    self.num_classes = len(self.classes)
    self.data_dir = data_dir
    self._size, self._channels, self._center_crop = size, channels, center_crop

  def _readable(self, found, size: int, channels: int):
    def readable(entry):
      try:
        _decode(entry[0], size, channels)
        return True
      except ConfigError:
        return False

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
      keep = list(pool.map(readable, found))
    skipped = [f for (f, _), ok in zip(found, keep, strict=True) if not ok]
    if skipped:
      logging.warning("skipped %d unreadable images (config.dataset.skip_bad_files), e.g. %s", len(skipped), skipped[0])
    return [entry for entry, ok in zip(found, keep, strict=True) if ok]

  def __len__(self):
    return len(self.files)

  def encoded(self, index: int):
    """(the path of example `index`'s image file, label)."""
    return self.files[index], int(self.labels[index])

  def get(self, indices):
    decode = functools.partial(_decode, size=self._size, channels=self._channels, center_crop=self._center_crop)
    images = np.stack([decode(self.files[int(i)]) for i in indices])  # In one of the loader's threads.
    return {"image": images.astype(np.float32) / 255.0, "label": self.labels[np.asarray(indices)]}


TAR_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
_TAR_KEY = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset's key: the name up to its first dot.


class TarShardSource:
  """Image-text pairs in webdataset-style tar shards, `data_dir/SPLIT/*.tar` (the layout img2dataset writes for
  LAION, CC and DataComp): `KEY.jpg` (or png / webp) beside `KEY.txt`, KEY being a member's name up to its first
  dot. Process p of P reads only shards p, p + P, ... (`process_index`, `process_count`; evaluation reads every
  shard). Their members are indexed once from the tar headers and read by offset, so the pipeline stays
  random-access and step-indexed: `sampler` draws each process's share of a step's batch from its own pairs, a pure
  function of (seed, process, step), and a resume replays it exactly.

  A shard that is not a readable tar or is cut short is a one-line ConfigError naming it, or with `skip_bad_files`
  skipped (and listed in `skipped_shards`); a key with no image or no caption is left out and counted in
  `incomplete`. `get` gives "captions" (one per pair) for `CaptionedSource` (config.dataset.captions = "feature")."""

  num_classes, class_names = 0, None

  def __init__(
    self, root: str, size: int, channels: int, center_crop=1.0, skip_bad_files=False, process_index=0, process_count=1
  ):
    shards = sorted(glob.glob(os.path.join(root, "*.tar")))
    if not shards:
      raise ConfigError(f"config.dataset.data_dir: no .tar shards in {root}")
    if len(shards) < process_count:
      raise ConfigError(f"config.dataset.data_dir: {len(shards)} shards in {root} for {process_count} processes")
    self._size, self._channels, self._center_crop, self._skip = size, channels, center_crop, skip_bad_files
    self.shards = shards[process_index::process_count]
    self.process_index, self.process_count = process_index, process_count
    self.skipped_shards, self.incomplete, self._pairs = [], 0, []
    for shard in self.shards:
      self._pairs += self._index(shard)
    if not self._pairs:
      raise ConfigError(f"config.dataset.data_dir: no image-caption pairs in the shards of {root}")

  def _index(self, shard: str) -> list:
    """[(shard, image (offset, size), caption (offset, size))] of one shard, in the order of its members."""
    members = {}
    try:
      length = os.path.getsize(shard)
      with tarfile.open(shard, "r:") as tar:
        for member in tar:
          match = _TAR_KEY.match(member.name)
          if not member.isfile() or not match:
            continue
          if member.offset_data + member.size > length:
            raise tarfile.ReadError(f"{member.name} is cut short")
          members.setdefault(match.group(1), {})[match.group(2).lower()] = (member.offset_data, member.size)
    except (tarfile.TarError, OSError, EOFError) as error:
      if not self._skip:
        raise ConfigError(
          f"config.dataset.data_dir: shard {shard} is not a readable tar ({error}); "
          "config.dataset.skip_bad_files=True skips such shards"
        ) from None
      logging.warning("skipped unreadable shard %s (%s)", shard, error)
      self.skipped_shards.append(shard)
      return []
    pairs = []
    for extensions in members.values():
      image = next((extensions[e] for e in TAR_IMAGE_EXTENSIONS if e in extensions), None)
      if image is None or "txt" not in extensions:
        self.incomplete += 1
        continue
      pairs.append((shard, image, extensions["txt"]))
    return pairs

  def __len__(self):
    return len(self._pairs)

  @property
  def total_examples(self) -> int:
    """The pairs of all processes, for the schedule: every process is taken to hold as many as this one."""
    return len(self) * self.process_count

  def sampler(self, global_batch_size: int, seed: int) -> "ProcessSampler":
    return ProcessSampler(len(self), global_batch_size // self.process_count, seed, self.process_index)

  def _read(self, index: int):
    shard, (image_offset, image_size), (text_offset, text_size) = self._pairs[index]
    with open(shard, "rb") as f:
      f.seek(image_offset)
      image = f.read(image_size)
      f.seek(text_offset)
      caption = f.read(text_size).decode("utf-8", errors="replace").strip()
    try:
      with _open(image) as opened:
        pixels = np.asarray(_convert(opened, self._channels))
    except (OSError, ValueError, SyntaxError) as error:
      raise ConfigError(f"config.dataset: cannot read the image of pair {index} in {shard} ({error})") from None
    return pixels.reshape(*pixels.shape[:2], self._channels), caption

  def get(self, indices):
    images, captions = zip(*[self._read(int(i)) for i in indices], strict=True)  # In one of the loader's threads.
    return {
      "image": preprocess(list(images), self._size, self._center_crop),
      "label": np.full(len(captions), -1, np.int32),
      "captions": [[c] for c in captions],
    }


@dataclasses.dataclass(frozen=True)
class ProcessSampler:
  """This process's share of every step's batch drawn from its own examples (its own shards): epoch e of process
  p reads a permutation drawn from (seed, p, e), a pure function of the step."""

  num_examples: int
  batch_size: int  # Per process.
  seed: int
  process_index: int

  @property
  def steps_per_epoch(self) -> int:
    return self.num_examples // self.batch_size

  def process_indices(self, step: int, process=None) -> np.ndarray:
    """(`process` is ignored: this sampler is its process's own.)"""
    if self.steps_per_epoch == 0:
      raise ConfigError(
        f"config.batch_size: this process's {self.batch_size} is more than its {self.num_examples} pairs"
      )
    epoch, position = divmod(step, self.steps_per_epoch)
    order = epoch_order(self.num_examples, self.seed, self.process_index, epoch)
    return order[position * self.batch_size : (position + 1) * self.batch_size]


def _class_dirs(root: str) -> list[str]:
  """The subdirectories of `root` (a folder dataset's classes), sorted; hidden ones (.ipynb_checkpoints, .git)
  are no class."""
  return sorted(d for d in os.listdir(root) if not d.startswith(".") and os.path.isdir(os.path.join(root, d)))


def _images_in(root: str, subdir: str) -> list[str]:
  """Image file names (PNG/JPEG, any case) directly in root/subdir, sorted."""
  names = os.listdir(os.path.join(root, subdir))
  return sorted(n for n in names if n.lower().endswith(IMAGE_SUFFIXES) and not n.startswith("."))


def _npz(data_dir, split: str, size: int, train: bool = True) -> ArraySource:
  """`data_dir/SPLIT.npz` with "images" [N, H, W, C] (uint8, or float in [0, 1]) and optional "labels" [N] (class
  numbers 0..K-1; in the training split (`train`) every class has an example)."""
  path = os.path.join(data_dir or "", f"{split}.npz")
  if not os.path.isfile(path):
    raise ConfigError(f"config.dataset.data_dir: {path} does not exist (an 'npz' dataset holds SPLIT.npz files)")
  try:
    arrays = np.load(path)  # allow_pickle=False: object arrays (which would unpickle code) are refused below.
    names = sorted(arrays) if isinstance(arrays, np.lib.npyio.NpzFile) else None
    if names is not None and "images" in names:
      with arrays:
        images, labels = arrays["images"], arrays["labels"] if "labels" in names else None
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # Truncated, not a zip, object arrays.
    raise ConfigError(f"config.dataset: cannot read {path} ({' '.join(str(error).split())})") from None
  if names is None:
    raise ConfigError(f"config.dataset: {path} is not an .npz archive (a .npy array? save with np.savez)")
  if "images" not in names:
    raise ConfigError(f"config.dataset: {path} has no 'images' array (it has {names})")
  if images.ndim != 4:
    raise ConfigError(f"config.dataset: {path} 'images' must be [N, H, W, C], not shape {images.shape}")
  if images.shape[-1] not in (1, 3) and images.shape[1] in (1, 3):
    raise ConfigError(
      f"config.dataset: {path} 'images' of shape {images.shape} look channels-first: save [N, H, W, C]"
      " (np.moveaxis(images, 1, -1))"
    )
  if len(images) == 0:
    raise ConfigError(f"config.dataset: {path} 'images' holds no image")
  if labels is not None and labels.shape != images.shape[:1]:
    raise ConfigError(f"config.dataset: {path} 'labels' has shape {labels.shape}, not [{len(images)}]")
  if images.dtype == np.uint8:
    images = preprocess(images, size)
  elif np.issubdtype(images.dtype, np.floating):
    if images.shape[1:3] != (size, size):
      raise ConfigError(f"config.dataset: {path} float images are {images.shape[1:3]}, not the image_size {size}")
    if not np.isfinite(images).all():
      first = int(np.argmax(~np.isfinite(images).reshape(len(images), -1).all(axis=1)))
      raise ConfigError(f"config.dataset: {path} 'images' holds NaN or inf (image {first} first)")
    if images.min() < 0 or images.max() > 1:
      raise ConfigError(f"config.dataset: {path} float images must lie in [0, 1]")
    images = images.astype(np.float32)
  else:
    raise ConfigError(f"config.dataset: {path} images are {images.dtype}, not uint8 or float")
  if labels is None:
    return ArraySource(images, np.full(len(images), -1, np.int32), 0)
  labels = _class_labels(labels, f"{path} 'labels'", every_class=train)
  return ArraySource(images, labels, int(labels.max()) + 1 if len(labels) else 0)


def _class_labels(labels: np.ndarray, where: str, every_class: bool) -> np.ndarray:
  """int32 class labels 0..K-1 from an array of any numeric dtype, or a one-line ConfigError naming the value
  (a float that is not a whole number, a negative or huge label; with `every_class`, the training split, classes
  without an example below the largest label: one stray label would add hundreds of empty classes)."""

  def bad(index, why: str):
    return ConfigError(f"config.dataset: {where} {why} (label {labels[index].item()!r} at index {index})")

  if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
    raise ConfigError(f"config.dataset: {where} are {labels.dtype}, not integer class labels")
  if len(labels) == 0:
    return labels.astype(np.int32)
  whole = np.isfinite(labels) & (labels == np.round(labels)) if labels.dtype.kind == "f" else np.ones(len(labels), bool)
  if not whole.all():
    raise bad(int(np.argmin(whole)), "must be whole numbers")
  if labels.min() < 0:
    raise bad(int(np.argmin(labels)), "must be class numbers 0, 1, ...")
  if labels.max() >= 2**31:
    raise bad(int(np.argmax(labels)), "do not fit int32")
  labels = labels.astype(np.int32)
  if every_class:
    empty = np.setdiff1d(np.arange(labels.max() + 1), labels)
    if len(empty):
      raise bad(
        int(np.argmax(labels)),
        f"leave {len(empty)} of the classes 0..{labels.max()} without an example (first: {empty[0]}): number the"
        " classes 0..K-1",
      )
  return labels


def check_test_labels(train_source, test_source, dataset_config):
  """One-line ConfigError when the test split has labels that no training class has."""
  if train_source.num_classes and test_source.num_classes > train_source.num_classes:
    raise ConfigError(
      f"config.dataset.test_split: {dataset_config.test_split!r} has label {test_source.num_classes - 1}, but the"
      f" training split has only classes 0..{train_source.num_classes - 1}"
    )


def fixed_subset(source, max_examples: int, seed: int):
  """`source` itself, or `max_examples` of its examples drawn once by `seed` (the same at every call)."""
  if len(source) <= max_examples:
    return source
  indices = np.sort(np.random.default_rng(seed).permutation(len(source))[:max_examples])
  return SubsetSource(source, indices)


def _digits(split: str, size: int, bold: bool = False) -> ArraySource:
  """scikit-learn's digits at `size` px; `bold`: "digits_bold", the same digits with their strokes thickened by a
  3 x 3 grey-level dilation at that size (CycleGAN's embedded second domain: the true translation is known)."""
  from sklearn.datasets import load_digits

  digits = load_digits()
  order = np.random.default_rng(0).permutation(len(digits.target))
  test, train = order[:DIGITS_TEST_SIZE], order[DIGITS_TEST_SIZE:]
  index = {"train": train, "test": test}.get(split)
  if index is None:
    name = "digits_bold" if bold else "digits"
    raise ConfigError(f"config.dataset: {name} has splits 'train' and 'test', not {split!r}")
  images = digits.images[index].astype(np.float32)[..., None] / 16.0
  if size != images.shape[1]:
    images = np.asarray(jax.image.resize(images, (len(images), size, size, 1), "linear"))
  images = np.clip(images, 0.0, 1.0)
  return ArraySource(dilate(images) if bold else images, digits.target[index].astype(np.int32), 10)


def dilate(images: np.ndarray) -> np.ndarray:
  """Grey-level dilation of [N, H, W, C] images by a 3 x 3 square: each pixel the maximum of its neighbourhood."""
  height, width = images.shape[1:3]
  padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
  shifts = [padded[:, dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)]
  return np.max(shifts, axis=0)


PHOTO_CROP, PHOTO_STRIDE, PHOTO_TEST_COLUMNS = 64, 16, 160


def _sample_photos(split: str, size: int) -> ArraySource:
  """Square crops of scikit-learn's two bundled photos (china.jpg, flower.jpg; 427 x 640), labelled by photo:
  `PHOTO_CROP` px windows every `PHOTO_STRIDE` px, resized (antialiased) to `size`. "test" crops come from each
  photo's rightmost `PHOTO_TEST_COLUMNS` columns, "train" crops from the rest (1242 and 322 crops): held-out
  regions of the same two scenes, not new scenes."""
  from sklearn.datasets import load_sample_images

  if split not in ("train", "test"):
    raise ConfigError(f"config.dataset: sample_photos has splits 'train' and 'test', not {split!r}")
  crops, labels = [], []
  for label, photo in enumerate(load_sample_images().images):
    height, width = photo.shape[:2]
    columns = (0, width - PHOTO_TEST_COLUMNS) if split == "train" else (width - PHOTO_TEST_COLUMNS, width)
    for top in range(0, height - PHOTO_CROP + 1, PHOTO_STRIDE):
      for left in range(columns[0], columns[1] - PHOTO_CROP + 1, PHOTO_STRIDE):
        crops.append(photo[top : top + PHOTO_CROP, left : left + PHOTO_CROP])
        labels.append(label)
  images = np.stack(crops).astype(np.float32) / 255.0
  if size != PHOTO_CROP:
    images = np.asarray(jax.image.resize(images, (len(images), size, size, 3), "linear", antialias=True))
  return ArraySource(np.clip(images, 0.0, 1.0), np.array(labels, np.int32), 2)


class CaptionedSource:
  """`source` whose examples carry "text", int32 [B, context_length]: one of each example's captions, tokenised
  (`ssljax.text.tokenize`). `captions_of(batch)` lists every example's candidate captions: the templates of its
  label ("label_templates", synthetic) or the source's own caption feature ("feature", e.g. COCO's five).
  Training draws one afresh at every step, keyed by (step, example index) (`get_for_step`: the same batches after
  a resume and on any number of processes); evaluation reads candidate index mod the number of candidates."""

  def __init__(self, source, captions_of, context_length: int, tokenizer, class_names=None):
    self.source, self.num_classes, self.class_names = source, source.num_classes, class_names
    self._captions_of, self._length, self._tokenizer = captions_of, context_length, tokenizer

  def __len__(self):
    return len(self.source)

  @property
  def total_examples(self) -> int:
    return num_examples(self.source)

  def sampler(self, global_batch_size: int, seed: int):
    return train_sampler(self.source, global_batch_size, seed)

  def _with_text(self, batch, choose):
    from ssljax import text

    options = self._captions_of(batch)
    captions = [candidates[choose(i, len(candidates))] for i, candidates in enumerate(options)]
    batch = {k: v for k, v in batch.items() if k != "captions"}
    return {**batch, "text": text.tokenize(captions, self._length, self._tokenizer)}

  def get(self, indices):
    indices = np.asarray(indices)
    return self._with_text(self.source.get(indices), lambda i, n: int(indices[i]) % n)

  def get_for_step(self, indices, step: int):
    indices = np.asarray(indices)
    choose = lambda i, n: int(np.random.default_rng([step, int(indices[i])]).integers(n))  # noqa: E731
    return self._with_text(self.source.get(indices), choose)


def _captioned(source, dataset_config, text_config, split: str):
  """`source` with the captions `config.dataset.captions` asks for."""
  from ssljax import text

  kind = require_choice(dataset_config.captions, ("label_templates", "feature"), "config.dataset.captions")
  if text_config is None:
    raise ConfigError("config.text: captions need a tokenizer and a context_length")
  tokenizer = text.load_tokenizer(text_config.tokenizer)
  if kind == "feature":
    return CaptionedSource(source, lambda batch: batch["captions"], text_config.context_length, tokenizer)
  names = getattr(source, "class_names", None) or (text.DIGIT_NAMES if dataset_config.name == "digits" else None)
  if not names or len(names) != source.num_classes:
    raise ConfigError(f"config.dataset.captions: {dataset_config.name!r} split {split!r} has no class names to caption")

  def templates_of(batch):
    return [[t.format(names[label]) for t in text.CAPTION_TEMPLATES] for label in batch["label"]]

  return CaptionedSource(source, templates_of, text_config.context_length, tokenizer, tuple(names))


def load_source(dataset_config, split: str, text_config=None):
  """The split `split` of `config.dataset` (name, image_size, optional data_dir) as a random-access source;
  with `captions`, its examples carry "text" tokenised as `config.text` says."""
  if is_text(dataset_config):
    return load_text_source(dataset_config, split, text_config)
  size, center_crop = dataset_config.image_size, dataset_config.get("center_crop", 1.0)
  if not isinstance(size, int) or size <= 0:
    raise ConfigError(f"config.dataset.image_size: must be a positive integer, got {size!r}")
  if dataset_config.name in ("digits", "digits_bold"):
    source = _digits(split, size, bold=dataset_config.name == "digits_bold")
  elif dataset_config.name == "sample_photos":
    source = _sample_photos(split, size)
  elif dataset_config.name == "folder":
    data_dir, channels = dataset_config.get("data_dir"), dataset_config.channels
    train_root = os.path.join(data_dir or "", dataset_config.train_split)
    classes = _class_dirs(train_root) if split != dataset_config.train_split and os.path.isdir(train_root) else None
    skip = dataset_config.get("skip_bad_files", False)
    source = FolderSource(data_dir, split, size, channels, classes, skip_bad_files=skip, center_crop=center_crop)
  elif dataset_config.name == "tar":
    train = split == dataset_config.train_split  # Training reads this process's shards, evaluation all of them.
    source = TarShardSource(
      os.path.join(dataset_config.get("data_dir") or "", split),
      size,
      dataset_config.channels,
      center_crop,
      dataset_config.get("skip_bad_files", False),
      jax.process_index() if train else 0,
      jax.process_count() if train else 1,
    )
  elif dataset_config.name == "npz":
    source = _npz(dataset_config.get("data_dir"), split, size, train=split == dataset_config.train_split)
  else:
    split_key = "test_split" if split == dataset_config.get("test_split") else "train_split"
    with_feature = dataset_config.get("captions") == "feature"
    caption_feature = dataset_config.get("caption_feature") if with_feature else None
    source = TfdsSource(
      dataset_config.name, split, size, dataset_config.get("data_dir"), split_key, center_crop, caption_feature
    )
  check_source(source, dataset_config, split)
  if dataset_config.get("captions"):
    source = _captioned(source, dataset_config, text_config, split)
  if dataset_config.get("domain_b"):
    source = UnpairedSource(source, _domain_b(dataset_config, split))
  return source


def _domain_b(dataset_config, split: str):
  """The split of `config.dataset.domain_b` (name, train_split, test_split, optional data_dir) that matches
  `split` of domain A, read at domain A's image size and channels."""
  section = dataset_config.domain_b
  split_b = section.train_split if split == dataset_config.train_split else section.test_split
  config_b = dict(dataset_config.to_dict(), **section.to_dict(), domain_b=None)
  try:
    return load_source(ml_collections.ConfigDict(config_b), split_b)
  except ConfigError as error:  # Name the key that set what could not be read.
    raise ConfigError(str(error).replace("config.dataset", "config.dataset.domain_b", 1)) from None


class UnpairedSource:
  """Two image domains with no pairing between them (CycleGAN's unaligned data): example i is `source`'s (domain
  A) example i mod len(A), with its label, and "image_b" / "label_b" from `other` (domain B). An epoch is
  max(len(A), len(B)) examples, as the authors' unaligned dataset. Training draws the B example uniformly at random
  afresh at every step, as that dataset does, keyed by (step, i) (`get_for_step`: the same batches after a resume
  and on any number of processes); `get` reads B's example i mod len(B). Evaluation reads each domain's own test
  split whole (`source`, `other`)."""

  def __init__(self, source, other):
    self.source, self.other, self.num_classes = source, other, source.num_classes

  def __len__(self):
    return max(len(self.source), len(self.other))

  @property
  def data_dir(self):
    """Where domain A was found (what a run's saved config records)."""
    return getattr(self.source, "data_dir", None)

  def _read(self, indices, indices_b):
    indices = np.asarray(indices)
    batch, other = self.source.get(indices % len(self.source)), self.other.get(np.asarray(indices_b))
    return {**batch, "image_b": other["image"], "label_b": other["label"]}

  def get(self, indices):
    return self._read(indices, np.asarray(indices) % len(self.other))

  def get_for_step(self, indices, step: int):
    draws = [np.random.default_rng([step, int(i)]).integers(len(self.other)) for i in indices]
    return self._read(indices, draws)


def check_source(source, dataset_config, split: str):
  """One-line ConfigErrors for a split that is empty or whose examples do not match the config."""
  name = f"{dataset_config.name!r} split {split!r}"
  if len(source) == 0:
    raise ConfigError(f"config.dataset: {name} is empty")
  example = source.get(np.arange(1))
  image, label = example["image"], example["label"]
  height, width, channels = image.shape[1:] if image.ndim == 4 else (None, None, None)
  if channels != dataset_config.channels:
    raise ConfigError(
      f"config.dataset.channels: {dataset_config.channels}, but {name} images have shape {image.shape[1:]}"
    )
  if (height, width) != (dataset_config.image_size,) * 2:
    raise ConfigError(
      f"config.dataset.image_size: {dataset_config.image_size}, but {name} images have shape {image.shape[1:]}"
    )
  if image.dtype != np.float32 or not np.issubdtype(label.dtype, np.integer):
    raise ConfigError(f"config.dataset: {name} gives {image.dtype} images and {label.dtype} labels, not float32/int")


@dataclasses.dataclass(frozen=True)
class StepIndexedSampler:
  """Which examples make up the global batch of each step: a pure function of (seed, step)."""

  num_examples: int
  global_batch_size: int
  seed: int

  @property
  def steps_per_epoch(self) -> int:
    return self.num_examples // self.global_batch_size

  def global_indices(self, step: int) -> np.ndarray:
    if self.steps_per_epoch == 0:
      raise ConfigError(
        f"config.batch_size: {self.global_batch_size} is larger than the dataset ({self.num_examples} examples)"
      )
    epoch, position = divmod(step, self.steps_per_epoch)
    order = epoch_order(self.num_examples, self.seed, epoch)
    return order[position * self.global_batch_size : (position + 1) * self.global_batch_size]

  def process_indices(self, step: int, process=None) -> np.ndarray:
    return process_slice(self.global_indices(step), process)


@functools.lru_cache(maxsize=4)
def epoch_order(num_examples: int, *seed_words: int) -> np.ndarray:
  """The permutation of an epoch drawn from `seed_words`, kept for the steps that read it (every chunk of every step
  of the epoch asks for it; ImageNet's takes ~20 ms to draw). Read-only."""
  order = np.random.default_rng(list(seed_words)).permutation(num_examples)
  order.flags.writeable = False
  return order


def num_examples(source) -> int:
  """The training examples of all processes (a source of per-process shards holds only this process's)."""
  return getattr(source, "total_examples", len(source))


def train_sampler(source, global_batch_size: int, seed: int):
  """The step-indexed sampler of a training source: its own (per-process shards) or the global one."""
  own = getattr(source, "sampler", None)
  return own(global_batch_size, seed) if own else StepIndexedSampler(len(source), global_batch_size, seed)


def this_process() -> tuple[int, int]:
  """(this process's index, the number of processes): taken in the training process, since the loader's worker
  processes (`load_in_order`) run no `jax.distributed` and would see (0, 1)."""
  return jax.process_index(), jax.process_count()


def process_slice(global_indices: np.ndarray, process=None) -> np.ndarray:
  """Process `process`'s ((index, count), default: this one's) contiguous slice of a global batch's indices."""
  index, count = process or this_process()
  per_process = len(global_indices) // count
  return global_indices[index * per_process : (index + 1) * per_process]


@dataclasses.dataclass(frozen=True)
class OrderSampler:
  """The global batches of steps first_step, first_step + 1, ... taken in turn from a given order of examples
  (DeepCluster's epoch, sampled uniformly over its clusters)."""

  order: np.ndarray
  first_step: int
  global_batch_size: int

  def process_indices(self, step: int, process=None) -> np.ndarray:
    start = (step - self.first_step) * self.global_batch_size
    return process_slice(self.order[start : start + self.global_batch_size], process)


class HostCrops:
  """Training views cut on the host from the full images: for every example and every view of `views`
  (AugmentConfigs: size, crop_scale, crop_ratio) a random resized crop, its box sampled on the full image (by
  `augment.crop_box`, keyed by (seed, step, example index): the same batch on any number of processes or after a
  resume) and decoded with the crop folded in (`decode_crop_resize`). SimCLR's and MAE's input pipelines crop so;
  cropping an already centre-cropped `image_size` square would never show an image's outer part and up-sample
  every view. The device then runs the rest of each view's augmentation (`augment.augment_view`).

  `get_for_step(indices, step)` -> {"crops": (uint8 [N, size, size, C] per view), "label"}: uint8, a quarter of
  float32's bytes to copy to the device, which converts them (converting on the host took 40% of its time). An
  example's crops do not depend on the others in its call: the loader (`load_batches`) cuts a step in chunks."""

  def __init__(self, source, views, seed: int, channels: int, resize: str = "bilinear"):
    full_images = source.source if isinstance(source, SubsetSource) else source
    if not hasattr(full_images, "encoded"):
      raise ConfigError("config.dataset.host_crops: needs full-size images (a tfds or 'folder' dataset)")
    self.source, self.num_classes = source, source.num_classes
    self._views, self._seed, self._channels, self._resize = tuple(views), seed, channels, resize

  def __len__(self):
    return len(self.source)

  def boxes(self, step: int, indices, heights, widths) -> np.ndarray:
    """[N, views, 4] crop boxes (top, left, height, width) of the examples `indices` (full sizes heights x widths)."""
    with jax.default_device(jax.local_devices(backend="cpu")[0]):
      boxes = _crop_boxes(self._seed, step, np.asarray(indices), np.asarray(heights), np.asarray(widths), self._views)
    return np.asarray(boxes)

  def _read(self, index: int):
    """(example `index`'s image: its bytes (a file is read once, for its header and its decode) or a uint8 array,
    its name for errors (the file's path), its label, its (height, width))."""
    from PIL import Image

    image, label = self.source.encoded(index)
    name = image if isinstance(image, str) else f"example {index} of the training split"
    try:
      if isinstance(image, str):
        with open(image, "rb") as f:
          image = f.read()
      return image, name, label, image_size(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:  # A tfds record's header.
      raise _bad_image(name, error) from None

  def get_for_step(self, indices, step: int) -> dict:
    indices = [int(i) for i in indices]
    images, names, labels, sizes = zip(*[self._read(index) for index in indices], strict=True)
    heights, widths = zip(*sizes, strict=True)
    boxes = self.boxes(step, indices, heights, widths)
    crops = tuple(np.empty((len(indices), v.size, v.size, self._channels), np.uint8) for v in self._views)

    for view, (config, out) in enumerate(zip(self._views, crops, strict=True)):
      for example, (image, name) in enumerate(zip(images, names, strict=True)):
        decode_crop_resize(image, boxes[example, view], config.size, self._channels, self._resize, name, out[example])
    return {"crops": crops, "label": np.array(labels, np.int32)}


def views_source(source, config, crops, seed: int):
  """`source` as a train step reads it: with `config.dataset.host_crops`, `HostCrops` cutting the views `crops`
  (the method's AugmentConfigs) from its full images; else `source`, whose images the device crops."""
  if not config.dataset.get("host_crops"):
    return source
  return HostCrops(source, crops, seed, config.dataset.channels, config.dataset.get("host_resize", "bilinear"))


@functools.partial(jax.jit, static_argnums=5)
def _crop_boxes(seed, step, indices, heights, widths, views):
  from ssljax import augment

  def one(index, height, width):
    keys = jax.random.split(jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), step), index), len(views))
    return jnp.stack(
      [
        jnp.stack(augment.crop_box(k, height, width, v.crop_scale, v.crop_ratio))
        for k, v in zip(keys, views, strict=True)
      ]
    )

  return jax.vmap(one)(indices, heights.astype(jnp.float32), widths.astype(jnp.float32))


def global_batch(local_batch: dict, sharding) -> dict:
  """Assemble each process's numpy slice into one global jax.Array sharded by `sharding`."""
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)


# Twice this process's cores: 2,660 images/s of host crops on 2 cores against 2,340 with 8 threads (measured,
# launch/bench_input.py), the spare threads covering file reads.
LOADER_THREADS = 2 * (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
LOADER_CHUNK = 32  # Examples per unit of the loader's work: its buffers hold chunks of a batch, not whole batches.


def _cpu_only_jax(worker_index: int, worker_count: int):
  """A loader worker process computes on the CPU (crop boxes) and must not open the accelerators the training
  process holds."""
  del worker_index, worker_count
  jax.config.update("jax_platforms", "cpu")


def load_in_order(read, keys, worker_processes: int = 0, ahead: int = 2):
  """Yields read(key) for each of `keys` (a sequence) in order, computed ahead by grain (google/grain, what MaxText
  and NVIDIA's JAX toolbox feed accelerators with): `LOADER_THREADS` keys at once (the JPEG decoder, OpenCV and file
  reads release the GIL) with `ahead` more results buffered, in this process; or, with `worker_processes` > 0, in
  that many spawned processes taking every n-th key, each with its share of the threads and of `ahead` (for hosts
  where the Python between the decodes is the limit; `read` and what it reads must pickle, and grain passes the
  arrays through /dev/shm). A key's result never depends on which thread or process computed it. An error in
  `read` is raised here as it was raised there, after the results of the keys before it."""
  import grain  # Imported here: sources are built and tested without it.

  processes = max(1, worker_processes)
  threads = max(1, LOADER_THREADS // processes)
  options = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=threads + math.ceil(ahead / processes))
  dataset = grain.MapDataset.source(keys).map(read).to_iter_dataset(options)
  if worker_processes:
    if not flags.FLAGS.is_parsed():  # grain's process pool reads its absl flags; a program without absl's parsing
      flags.FLAGS.mark_as_parsed()  # (a notebook, pytest, a library user) leaves them at their defaults.
    options = grain.MultiprocessingOptions(num_workers=worker_processes)
    dataset = dataset.mp_prefetch(options, worker_init_fn=_cpu_only_jax)
  iterator = iter(dataset)
  try:
    yield from iterator
  finally:
    if hasattr(iterator, "close"):  # Stops the worker processes now, not at garbage collection.
      iterator.close()


@dataclasses.dataclass(frozen=True)
class _Chunks:
  """The loader's units of work for batches of `batch_size` examples: element i is (key, start, stop), chunk
  i % n of batch `keys[i // n]`, of `chunk` examples."""

  keys: object  # A sequence.
  batch_size: int
  chunk: int

  @property
  def per_batch(self) -> int:
    return max(1, math.ceil(self.batch_size / self.chunk))

  def __len__(self):
    return len(self.keys) * self.per_batch

  def __getitem__(self, position: int) -> tuple:
    batch, chunk = divmod(position, self.per_batch)
    return self.keys[batch], chunk * self.chunk, min((chunk + 1) * self.chunk, self.batch_size)


def load_batches(read, keys, batch_size: int, worker_processes: int = 0):
  """Yields (key, batch) for each of `keys`: the batch's examples [0, batch_size) read as chunks of `LOADER_CHUNK`,
  read((key, start, stop)), by `load_in_order` (the chunks of one batch and of the next at once, a batch ahead) and
  joined (`concatenate`). Chunks keep the buffers small: whole batches of ImageNet crops, one per thread, would
  hold tens of GB."""
  chunks = _Chunks(keys, batch_size, LOADER_CHUNK)
  parts = []
  for number, part in enumerate(load_in_order(read, chunks, worker_processes, ahead=chunks.per_batch)):
    # A worker's arrays live in /dev/shm, two file descriptors each, until dropped: copied out (a join of one) as
    # they come, a big batch's chunks would otherwise hold thousands.
    parts.append(concatenate([part]) if worker_processes else part)
    if len(parts) == chunks.per_batch:
      batch, parts = concatenate(parts), []
      yield keys[number // chunks.per_batch], batch


def concatenate(parts: list):
  """One batch of the batches `parts` (dicts of arrays, tuples of arrays such as HostCrops' "crops", and lists of
  per-example values such as captions), joined along the examples."""
  first = parts[0]
  if isinstance(first, dict):
    return {key: concatenate([part[key] for part in parts]) for key in first}
  if isinstance(first, tuple):
    return tuple(concatenate(list(same)) for same in zip(*parts, strict=True))
  if isinstance(first, list):
    return [example for part in parts for example in part]
  return np.concatenate(parts)


def _step_chunk(source, sampler, process, chunk: tuple) -> dict:
  """Examples [start, stop) of this process's batch of the step, chunk = (step, start, stop), with "index": their
  indices in the source. `process`: (index, count), taken in the training process (`this_process`)."""
  step, start, stop = chunk
  indices = sampler.process_indices(step, process)[start:stop]
  local = source.get_for_step(indices, step) if hasattr(source, "get_for_step") else source.get(indices)
  return {**local, "index": np.asarray(indices, np.int32)}


def train_batches(
  source, sampler, sharding, start_step: int, num_steps: int, prefetch: int = 2, worker_processes: int = 0
):
  """Yields (step, global batch) for steps [start_step, num_steps): each step's batch read by `load_batches`
  (`worker_processes` as there), then put on the devices `prefetch` steps ahead by a background thread. A source
  whose batches depend on the step (`HostCrops`, whose crops of an example are the same in any chunk) is read with
  `get_for_step`. Each batch also holds "index", the examples' indices in the source (DeepCluster-v2's memory bank
  is kept by example). With `sharding` None the batches stay this host's numpy arrays (launch/bench_input.py)."""
  slots: queue.Queue = queue.Queue(maxsize=prefetch)
  stop = threading.Event()
  steps = range(start_step, num_steps)

  def put(item) -> bool:
    """Hands `item` to the consumer; False once the consumer has stopped."""
    while not stop.is_set():
      try:
        slots.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def produce():
    try:
      process = this_process()
      batch_size = len(sampler.process_indices(start_step, process)) if steps else 0
      read = functools.partial(_step_chunk, source, sampler, process)
      for step, batch in load_batches(read, steps, batch_size, worker_processes):
        if not put((step, batch if sharding is None else global_batch(batch, sharding))):
          return
    except Exception as error:  # Surfaced in the consumer, not lost in the thread.
      put(error)
    put(None)

  thread = threading.Thread(target=produce, daemon=True)
  thread.start()
  try:
    while (item := slots.get()) is not None:
      if isinstance(item, Exception):
        raise item
      yield item
  finally:
    stop.set()


def _eval_chunk(source, batch_size: int, process, chunk: tuple):
  """Examples [start, stop) of this process's share of the evaluation batch at example `first`, chunk = (first,
  start, stop); past the split's end, example 0 pads it."""
  first, start, stop = chunk
  index, count = process
  indices = np.arange(first, first + batch_size)
  indices = np.where(indices < len(source), indices, 0)
  per_process = batch_size // count
  return source.get(indices[index * per_process : (index + 1) * per_process][start:stop])


def eval_batches(source, batch_size: int, sharding):
  """Yields (global batch, number of real examples) covering `source` once in order, read by `load_batches`; the
  last batch is padded by repeating example 0 so every batch has the same shape (one compilation)."""
  process = this_process()
  read = functools.partial(_eval_chunk, source, batch_size, process)
  per_process = batch_size // process[1]
  for first, local in load_batches(read, range(0, len(source), batch_size), per_process):
    yield global_batch(local, sharding), int(min(batch_size, len(source) - first))


def _indexed_chunk(source, indices, chunk: tuple):
  _, start, stop = chunk
  return source.get(indices[start:stop])


def read_examples(source, indices) -> dict:
  """source.get(indices) for many indices at once (a classifier's training images, a test split), in chunks by
  `load_batches`."""
  indices = np.asarray(indices)
  read = functools.partial(_indexed_chunk, source, indices)
  return next(batch for _, batch in load_batches(read, [0], len(indices))) if len(indices) else source.get(indices)
