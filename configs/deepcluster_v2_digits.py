r"""DeepCluster-v2 on scikit-learn's digits: SwAV-digits' network, crops and optimizer (configs/swav_digits.py),
with the prototypes set each epoch to the centroids of three spherical k-means of 30 clusters on the memory bank.

  python -m ssljax.train --config configs/deepcluster_v2_digits.py --workdir /tmp/ssljax/deepcluster_v2_digits
  python -m ssljax.train --config configs/deepcluster_v2_digits.py:runlocal --workdir /tmp/ssljax/dcv2_smoke

As the paper: temperature 0.1, 10 k-means iterations on crops 0 and 1, prototypes never trained. Deviation: 3 x 30
clusters (3 x 3000 for ImageNet's 1000 classes). An epoch is 5 steps: the k-means runs 112 times.
Measured alone on 2 CPU cores (2026-12-04, 13.5 min for the table's command): fast linear probe 0.881 at 10
labels per class (raw pixels 0.853), 0.983 on all labels (0.972); kNN k=20 0.967 (0.986); 10% fine-tune 0.847
(0.533 from random init). benchmarks/RESULTS.md, "Redundancy reduction and clustering on digits".
"""

from ml_collections import config_dict

from configs import swav_digits


def get_config(arg: str = ""):
  config = swav_digits.get_config(arg)
  del config["swav"]
  config.method = "deepcluster_v2"
  config.deepcluster_v2 = dict(
    proj_dim=64,
    hidden_dim=256,
    num_prototypes=(30, 30, 30),
    temperature=0.1,
    crops_for_assign=(0, 1),
    kmeans_iters=10,
    freeze_prototypes_steps=config_dict.placeholder(int),  # The whole run.
  )
  if "runlocal" in arg.split(","):
    # Epochs of 2 steps (batch 480), so that the smoke tests see the bank filled, a k-means and training on it.
    config.deepcluster_v2.update(proj_dim=16, hidden_dim=32, num_prototypes=(8, 8))
    config.batch_size = 480
  return config
