r"""How fast one host decodes training images: JPEG decode + random-resized-crop box + resize to 224 px, ours
(`ssljax.data.decode_crop_resize`: PIL, the crop folded into the decode by draft mode; from memory, a folder of
files and an ArrayRecord file read by index) against tf.data's
`tf.image.decode_and_crop_jpeg` + `tf.image.resize` (the baseline; TensorFlow from the `prepare` extra), on the
same synthetic ImageNet-sized JPEGs and the same crop boxes, in one run.

  python -m launch.bench_input [--images 256] [--size 224] [--workers 1 2]

Per core: one thread (ours) / a tf.data map with one thread and intra-op parallelism 1 (tf.data). Then ours in
threads of one process (`--workers` of them), as the sources decode (PIL releases the GIL while it decodes and
resizes), from memory, the files of a temporary folder and the records of an ArrayRecord file; last, the training
source itself (`data.HostCrops` over a folder on all cores: its header pass, its own boxes, float output).
"x tf.data" is images/s over tf.data's per-core rate; "16-core host" extrapolates the per-core rate (not measured).
"""

import argparse
import concurrent.futures
import io
import math
import os
import tempfile
import time

import numpy as np
from PIL import Image

from ssljax.data import decode_crop_resize


def synthetic_jpegs(count: int, seed: int = 0) -> list[bytes]:
  """ImageNet-like JPEGs (500 x 375 or 375 x 500, quality 90) of smooth random content, so that they compress
  like photographs rather than like noise."""
  rng = np.random.default_rng(seed)
  encoded = []
  for index in range(count):
    height, width = (375, 500) if index % 2 else (500, 375)
    coarse = rng.integers(0, 256, (height // 25 + 1, width // 25 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    encoded.append(buffer.getvalue())
  return encoded


def crop_boxes(encoded: list[bytes], seed: int = 1) -> list[tuple[int, int, int, int]]:
  """One random-resized-crop box (area 8-100%, aspect 3/4-4/3, as torchvision's sampler) per image, in pixels."""
  rng = np.random.default_rng(seed)
  boxes = []
  for data in encoded:
    width, height = Image.open(io.BytesIO(data)).size
    for _ in range(10):
      area = height * width * rng.uniform(0.08, 1.0)
      aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
      box_w, box_h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
      if 0 < box_w <= width and 0 < box_h <= height:
        boxes.append((int(rng.integers(0, height - box_h + 1)), int(rng.integers(0, width - box_w + 1)), box_h, box_w))
        break
    else:
      side = min(height, width)
      boxes.append(((height - side) // 2, (width - side) // 2, side, side))
  return boxes


def _decode_all(args):
  encoded, boxes, size = args
  return [decode_crop_resize(data, box, size).shape for data, box in zip(encoded, boxes, strict=True)]


def _read_and_decode(args):
  paths, boxes, size = args
  shapes = []
  for path, box in zip(paths, boxes, strict=True):
    with open(path, "rb") as f:
      shapes.append(decode_crop_resize(f.read(), box, size).shape)
  return shapes


def _array_record_decode(args):
  path, indices, boxes, size = args
  from array_record.python.array_record_module import ArrayRecordReader

  records = ArrayRecordReader(path).read(indices)
  return [decode_crop_resize(data, box, size).shape for data, box in zip(records, boxes, strict=True)]


def images_per_second(reader, chunks: list, count: int) -> float:
  """Images per second of `reader` over `chunks` (one per worker thread; PIL releases the GIL while it decodes
  and resizes, so threads of one process scale), after an untimed warm-up."""
  reader(_first_two(chunks[0]))
  with concurrent.futures.ThreadPoolExecutor(len(chunks)) as pool:
    start = time.perf_counter()
    list(pool.map(reader, chunks))
    return count / (time.perf_counter() - start)


def _first_two(chunk):
  """The first two items of a chunk (imports and allocations happen outside the timing)."""
  return tuple(part[:2] if isinstance(part, list) else part for part in chunk)


def label(source: str, workers: int) -> str:
  return f"ours, {source}, {workers} thread{'s' if workers > 1 else ''}"


def split(items: list, workers: int) -> list[list]:
  return [items[i::workers] for i in range(workers)]


def host_crops_row(folder: str, count: int, size: int):
  """What training reads with `dataset.host_crops`: `data.HostCrops` over a folder dataset (header pass, crop boxes
  from `augment.crop_box`, decode with the crop folded in), one view per image, on every core of the host."""
  from ssljax.augment import AugmentConfig
  from ssljax.data import FolderSource, HostCrops

  crops = HostCrops(FolderSource(folder, "train", size, 3), (AugmentConfig(size=size),), seed=0, channels=3)
  crops.get_for_step(np.arange(count), 0)  # Compiles the box sampler for this batch size, untimed.
  start = time.perf_counter()
  crops.get_for_step(np.arange(count), 1)
  cores = os.cpu_count() or 1
  return (f"ours, HostCrops over a folder, {cores} cores", cores, count / (time.perf_counter() - start))


def tf_data_rate(encoded, boxes, size: int) -> float | None:
  """tf.data's images per second on one core, or None without TensorFlow."""
  try:
    import tensorflow as tf
  except ImportError:
    return None
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)

  def decode(data, box):
    image = tf.image.decode_and_crop_jpeg(data, box, channels=3)
    return tf.cast(tf.image.resize(image, (size, size), method="bilinear"), tf.uint8)

  dataset = tf.data.Dataset.from_tensor_slices((encoded, np.asarray(boxes, np.int32))).map(decode)
  options = tf.data.Options()
  options.threading.private_threadpool_size = 1
  options.threading.max_intra_op_parallelism = 1
  dataset = dataset.with_options(options)
  for _ in dataset.take(4):  # Trace the map function, untimed.
    pass
  start = time.perf_counter()
  for _ in dataset:
    pass
  return len(encoded) / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--images", type=int, default=256)
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
  args = parser.parse_args()
  encoded = synthetic_jpegs(args.images)
  boxes = crop_boxes(encoded)
  mean_kb = np.mean([len(e) for e in encoded]) / 1024
  print(
    f"host: {os.cpu_count()} cores; {args.images} JPEGs of 500 x 375, "
    f"{mean_kb:.0f} KB on average; random-resized crops to {args.size} px"
  )
  baseline = tf_data_rate(encoded, boxes, args.size)
  rows = [("tf.data decode_and_crop_jpeg + resize, 1 core", 1, baseline)]
  for workers in args.workers:
    chunks = [(e, b, args.size) for e, b in zip(split(encoded, workers), split(boxes, workers), strict=True)]
    rows.append((label("in memory", workers), workers, images_per_second(_decode_all, chunks, len(encoded))))
  with tempfile.TemporaryDirectory() as folder:
    paths = []
    os.makedirs(os.path.join(folder, "train"))
    for index, data in enumerate(encoded):
      paths.append(os.path.join(folder, "train", f"{index:05d}.jpg"))
      with open(paths[-1], "wb") as f:
        f.write(data)
    from array_record.python.array_record_module import ArrayRecordWriter

    record_path = os.path.join(folder, "images.array_record")
    writer = ArrayRecordWriter(record_path, "group_size:1")  # Random access by index, as tfds writes them.
    for data in encoded:
      writer.write(data)
    writer.close()
    indices = list(range(len(encoded)))
    for workers in args.workers:
      chunks = [(p, b, args.size) for p, b in zip(split(paths, workers), split(boxes, workers), strict=True)]
      rows.append(
        (label("folder of files", workers), workers, images_per_second(_read_and_decode, chunks, len(encoded)))
      )
      chunks = [
        (record_path, i, b, args.size) for i, b in zip(split(indices, workers), split(boxes, workers), strict=True)
      ]
      rows.append(
        (label("ArrayRecord by index", workers), workers, images_per_second(_array_record_decode, chunks, len(encoded)))
      )
    rows.append(host_crops_row(folder, len(encoded), args.size))
  print(f"{'pipeline':52s} {'images/s':>9s} {'per core':>9s} {'x tf.data':>10s} {'16-core host':>13s}")
  for name, workers, rate in rows:
    if rate is None:
      print(f"{name:52s} {'(no TensorFlow: pip install -e .[prepare])':>43s}")
      continue
    ratio = f"{rate / workers / baseline:.2f}" if baseline else "-"
    print(f"{name:52s} {rate:9.0f} {rate / workers:9.0f} {ratio:>10s} {16 * rate / workers:13.0f}")


if __name__ == "__main__":
  main()
