r"""How fast one host turns JPEGs into training crops: ours (`ssljax.data`: libjpeg-turbo's DCT-scaled decode
through simplejpeg, OpenCV's resize, PIL only for what that path cannot read) against tf.data (the baseline;
TensorFlow from the `prepare` extra), on the same synthetic ImageNet-sized JPEGs and the same crop boxes, in one run.

  python -m launch.bench_input [--images 512] [--size 224] [--worker_processes 0]

Three stages, each ours against tf.data doing the same work with the same kind of resize (named in each row):
1. decode alone (the full image): `simplejpeg.decode_jpeg` / `tf.io.decode_jpeg`, one core;
2. decode + crop + resize to `size`: `data.decode_crop_resize` / `tf.image.decode_and_crop_jpeg` +
   `tf.image.resize`, one core, with the bilinear resize both sides use by default (no antialiasing: tf.data's
   default, SimCLR's and BYOL's pipelines) and with an antialiased area resize (`resize="area"` /
   `method="area"`), and to 96 px (multi-crop's local views: ours decodes crops of 192+ px at 1/2 DCT scale);
3. the training source end to end on every core of the host, in batches of 64: `data.train_batches` over
   `data.HostCrops` of a folder of JPEG files (its header pass, its crop boxes, the decode, uint8 crops, grain's
   loader threads; batches kept on the host), and with `--worker_processes N` also in N of grain's worker
   processes / a tf.data map over the same files (read, header, `sample_distorted_bounding_box`, decode with the
   crop, resize, uint8) with as many threads as cores.
One core: ours in one thread / a tf.data map with a private pool of one thread and intra-op parallelism 1.
"x tf.data" is the per-core rate over tf.data's in the row it is measured against.
"""

import argparse
import io
import math
import os
import tempfile
import time

import numpy as np
from PIL import Image

from ssljax import data


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
  for data_ in encoded:
    width, height = Image.open(io.BytesIO(data_)).size
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


LOCAL_SIZE = 96  # Multi-crop's local views: crops of 192+ px decode at 1/2 scale (ours).
PASSES = 5  # Each rate is over this many passes through the images (single passes varied by up to 30% here).


def one_core_rate(function, items: list) -> float:
  """Images per second of `function` over `items` in this thread, after an untimed warm-up on two of them."""
  for item in items[:2]:
    function(*item)
  start = time.perf_counter()
  for _ in range(PASSES):
    for item in items:
      function(*item)
  return PASSES * len(items) / (time.perf_counter() - start)


def ours_one_core(encoded, boxes, size: int) -> dict:
  import simplejpeg

  return {
    ("decode alone", "-"): one_core_rate(simplejpeg.decode_jpeg, [(e,) for e in encoded]),
    **{
      ("decode + crop + resize", resize): one_core_rate(
        lambda e, b, r=resize: data.decode_crop_resize(e, b, size, 3, r), list(zip(encoded, boxes, strict=True))
      )
      for resize in data.HOST_RESIZES
    },
    (f"... to {LOCAL_SIZE} px", "bilinear"): one_core_rate(
      lambda e, b: data.decode_crop_resize(e, b, LOCAL_SIZE), list(zip(encoded, boxes, strict=True))
    ),
  }


BATCH = 64  # Images per step in the training-source rows (tf.data's batch too).


def ours_training_source(folder: str, count: int, size: int, worker_processes: int = 0) -> float:
  """`data.train_batches` over `data.HostCrops` of the folder (as `dataset.host_crops` trains: the header pass,
  crop boxes from `augment.crop_box`, the decode, grain's loader), one view per image, batches of `BATCH` left on
  the host (no device transfer, as tf.data's row)."""
  from ssljax.augment import AugmentConfig

  crops = data.HostCrops(data.FolderSource(folder, "train", size, 3), (AugmentConfig(size=size),), seed=0, channels=3)
  sampler = data.StepIndexedSampler(count, BATCH, seed=0)
  steps = PASSES * sampler.steps_per_epoch
  for _ in data.train_batches(crops, sampler, None, 0, 2):  # Compiles the box sampler; untimed.
    pass
  batches = data.train_batches(crops, sampler, None, 1, steps + 2, worker_processes=worker_processes)
  next(batches)  # The steady rate, from the first batch on (worker processes start in seconds).
  start = time.perf_counter()
  for _ in batches:
    pass
  return steps * BATCH / (time.perf_counter() - start)


def tf_rates(encoded, boxes, paths, size: int, cores: int) -> dict:
  """tf.data's images per second for each stage, or {} without TensorFlow."""
  try:
    import tensorflow as tf
  except ImportError:
    return {}
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)

  def rate(dataset, threads: int, count: int, batch: bool = True) -> float:
    dataset = dataset.repeat(PASSES)
    if batch:  # As training reads it: no per-image round trip to Python (full images differ in shape: unbatched).
      dataset = dataset.batch(BATCH)
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    dataset = dataset.with_options(options)
    for _ in dataset.take(1):  # Trace the map function, untimed.
      pass
    start = time.perf_counter()
    for _ in dataset:
      pass
    return PASSES * count / (time.perf_counter() - start)

  def crop_and_resize(method, side=size):
    def decode(data_, box):
      image = tf.image.decode_and_crop_jpeg(data_, box, channels=3)
      return tf.cast(tf.image.resize(image, (side, side), method=method), tf.uint8)

    return decode

  pairs = tf.data.Dataset.from_tensor_slices((encoded, np.asarray(boxes, np.int32)))

  def train_view(path):
    data_ = tf.io.read_file(path)
    shape = tf.image.extract_jpeg_shape(data_)
    begin, crop_size, _ = tf.image.sample_distorted_bounding_box(
      shape,
      tf.zeros((1, 0, 4)),
      area_range=(0.08, 1.0),
      aspect_ratio_range=(3 / 4, 4 / 3),
      max_attempts=10,
      use_image_if_no_bounding_boxes=True,
    )
    box = tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])
    return tf.cast(tf.image.resize(tf.image.decode_and_crop_jpeg(data_, box, channels=3), (size, size)), tf.uint8)

  return {
    ("decode alone", "-"): rate(
      tf.data.Dataset.from_tensor_slices(encoded).map(tf.io.decode_jpeg), 1, len(encoded), batch=False
    ),
    ("decode + crop + resize", "bilinear"): rate(pairs.map(crop_and_resize("bilinear")), 1, len(encoded)),
    ("decode + crop + resize", "area"): rate(pairs.map(crop_and_resize("area")), 1, len(encoded)),
    (f"... to {LOCAL_SIZE} px", "bilinear"): rate(pairs.map(crop_and_resize("bilinear", LOCAL_SIZE)), 1, len(encoded)),
    ("training source", "bilinear"): rate(
      tf.data.Dataset.from_tensor_slices(paths).map(train_view, num_parallel_calls=cores), cores, len(paths)
    ),
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--images", type=int, default=512)
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--worker_processes", type=int, default=0, help="> 0: also a row with this many processes")
  args = parser.parse_args()
  encoded = synthetic_jpegs(args.images)
  boxes = crop_boxes(encoded)
  cores = os.cpu_count() or 1
  mean_kb = np.mean([len(e) for e in encoded]) / 1024
  print(
    f"host: {cores} cores (no accelerator used); {args.images} JPEGs of 500 x 375, {mean_kb:.0f} KB on average; "
    f"random-resized crops to {args.size} px, uint8 RGB"
  )
  ours = {key: (1, rate) for key, rate in ours_one_core(encoded, boxes, args.size).items()}
  with tempfile.TemporaryDirectory() as folder:
    os.makedirs(os.path.join(folder, "train"))
    paths = [os.path.join(folder, "train", f"{index:05d}.jpg") for index in range(len(encoded))]
    for path, data_ in zip(paths, encoded, strict=True):
      with open(path, "wb") as f:
        f.write(data_)
    ours["training source", "bilinear"] = (cores, ours_training_source(folder, len(encoded), args.size))
    if args.worker_processes:
      rate = ours_training_source(folder, len(encoded), args.size, args.worker_processes)
      ours[f"training source, {args.worker_processes} processes", "bilinear"] = (cores, rate)
    baseline = tf_rates(encoded, boxes, paths, args.size, cores)
  print(f"{'stage':24s} {'resize':9s} {'cores':>5s} {'tf.data /s':>11s} {'ours /s':>9s} {'x tf.data':>10s}")
  for (stage, resize), (workers, rate) in ours.items():
    theirs = baseline.get((stage.split(",")[0], resize))  # The processes row: against tf.data's training source.
    theirs_text = f"{theirs:11.0f}" if theirs else f"{'(no TF)':>11s}"
    ratio = f"{rate / theirs:10.2f}" if theirs else f"{'-':>10s}"
    print(f"{stage:24s} {resize:9s} {workers:5d} {theirs_text} {rate:9.0f} {ratio}")


if __name__ == "__main__":
  main()
