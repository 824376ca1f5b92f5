r"""DeepCluster on ImageNet (Caron et al. 2018, facebookresearch/deepcluster main.py) on a ResNet-50: batch 256,
k = 10,000 clusters of PCA-256-whitened features (20 k-means iterations) at every epoch, the classifier
re-initialised each epoch, SGD lr 0.05 (momentum 0.9; none for the classifier), weight decay 1e-5, constant,
random crops and flips, 500 epochs.

  python -m ssljax.train --config configs/deepcluster_imagenet.py --workdir gs://BUCKET/deepcluster_imagenet
  python -m ssljax.train --config configs/deepcluster_imagenet.py:runlocal --workdir /tmp/ssljax/dc_local

The paper reports AlexNet and VGG-16 (with a Sobel filter), evaluated by linear classifiers on each conv layer's
pooled activations; no ResNet-50 figure of its own exists, so none is quoted. `linear_fast` is our probe, not a
paper's protocol. Each epoch's clustering holds the training set's features on the host (1.28M x 2048 floats,
10 GB).
"""

from configs import deepcluster_digits, simclr_imagenet


def get_config(arg: str = ""):
  config = simclr_imagenet.get_config(arg)
  del config["simclr"]
  config.method = "deepcluster"
  config.deepcluster = dict(num_clusters=10000, pca_dim=256, kmeans_iters=20, reassign=1.0)
  config.model.update(conv_init="he_fan_out", zero_init_residual=False)
  config.augment.update(jitter_prob=0.0, blur_prob=0.0, grayscale_prob=0.0)
  config.batch_size = 256
  config.epochs = 500
  config.optimizer = deepcluster_digits.paper_optimizer()
  config.evals = dict(linear=dict(type="linear_probe", label_budgets=("all",), steps=20000, seed=0, every_steps=0))
  if "runlocal" in arg.split(","):
    config.deepcluster.update(num_clusters=16, pca_dim=8)
    config.evals.linear.steps = 50
  return config
