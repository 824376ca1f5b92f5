r"""DeepCluster-v2 on ImageNet (Caron et al. 2020, facebookresearch/swav `scripts/deepclusterv2_800ep_pretrain.sh`):
SwAV's network, multi-crop (2 x 224 + 6 x 96), batch 4096, LARS as LARC and schedule (configs/swav_imagenet.py),
800 epochs; three spherical k-means of 3000 clusters each epoch (10 iterations) on the memory bank of crops 0 and
1, temperature 0.1, prototypes = the centroids, never trained.

  python -m ssljax.train --config configs/deepcluster_v2_imagenet.py --workdir gs://BUCKET/deepcluster_v2
  python -m ssljax.train --config configs/deepcluster_v2_imagenet.py:runlocal --workdir /tmp/ssljax/dcv2_local

Expected: 75.2% linear top-1 after 800 epochs (the SwAV paper's Table 3, DeepCluster-v2 row) under the swav
repository's linear protocol (`linear_deepcluster_v2/ssl/all`: SGD lr 0.3, weight decay 1e-6, 100 epochs, batch
256); not yet measured with this codebase. Deviations: SwAV's, and the first epoch only fills the bank
(`ssljax/methods/deepcluster_v2.py`). The bank holds 2 x 1.28M x 128 floats (1.3 GB), split over the devices.
"""

from ml_collections import config_dict

from configs import simclr_imagenet, swav_imagenet


def get_config(arg: str = ""):
  config = swav_imagenet.get_config(arg)
  del config["swav"]
  config.method = "deepcluster_v2"
  config.deepcluster_v2 = dict(
    proj_dim=128,
    hidden_dim=2048,
    num_prototypes=(3000, 3000, 3000),
    temperature=0.1,
    crops_for_assign=(0, 1),
    kmeans_iters=10,
    freeze_prototypes_steps=config_dict.placeholder(int),  # The whole run.
  )
  simclr_imagenet.set_paper_evals(config, "deepcluster_v2", arg)
  if "runlocal" in arg.split(","):
    config.deepcluster_v2.update(proj_dim=32, hidden_dim=64, num_prototypes=(16, 16))
  return config
