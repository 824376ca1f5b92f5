"""Writes a PNG of two augmented views per image, to check a config's augmentations by eye.

  python -m ssljax.gallery --config configs/simclr_cifar10.py --out /tmp/gallery.png [--num_images 8]

Rows are images: the original, then view one and view two as the train step would make them.
"""

import numpy as np
from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file.", lock_config=True)
_OUT = flags.DEFINE_string("out", "gallery.png", "Where to write the PNG.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 8, "How many images (rows).")


def gallery(config, num_images: int, seed: int = 0) -> np.ndarray:
  """uint8 [rows * size, 3 * size, C]: original | view 1 | view 2 for `num_images` training images."""
  import jax
  import jax.numpy as jnp

  from ssljax import augment, data

  source = data.load_source(config.dataset, config.dataset.train_split, config.get("text"))
  images = jnp.asarray(source.get(np.arange(num_images))["image"])
  global_views, _, _ = augment.view_configs(config)  # The config's two views, asymmetric ones included.
  views = jax.jit(lambda x, key: augment.multi_view({"image": x}, key, global_views, None, 0)["global"])(
    images, jax.random.PRNGKey(seed)
  )
  view_a, view_b = np.split(np.asarray(views), 2)
  rows = np.concatenate([np.asarray(images), view_a, view_b], axis=2)
  return (np.concatenate(list(rows), axis=0) * 255).round().astype(np.uint8)


def main(argv):
  del argv
  from PIL import Image

  grid = gallery(_CONFIG.value, _NUM_IMAGES.value)
  grid = grid[..., 0] if grid.shape[-1] == 1 else grid
  Image.fromarray(grid).resize((grid.shape[1] * 4, grid.shape[0] * 4), Image.NEAREST).save(_OUT.value)
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
