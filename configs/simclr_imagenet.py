r"""SimCLR v1 on ImageNet: ResNet-50, batch 4096, LARS (lr 0.3 x B/256, weight decay 1e-6), temperature 0.1,
100 epochs with 10 warmup epochs, full colour distortion (strength 1.0) and blur, as in the SimCLR paper.

  python -m ssljax.train --config configs/simclr_imagenet.py --workdir gs://BUCKET/simclr_imagenet
  python -m ssljax.train --config configs/simclr_imagenet.py:runlocal --workdir /tmp/ssljax/simclr_imagenet_local

Needs tfds `imagenet2012` as ArrayRecord (manual download, then `tfds build imagenet2012
--file_format=array_record`). Images are resized (shorter side) and centre-cropped to 256 px on the host, then
random-resized-cropped to 224 px on the device. Expected: 0.64-0.66 linear-probe top-1 after 100 epochs (the
paper's Figure B.1 at batch 4096); not yet measured with this codebase.
"""

from ml_collections import config_dict

from configs import simclr_cifar10


def get_config(arg: str = ""):
  config = simclr_cifar10.get_config()
  config.dataset = dict(
    name="imagenet2012", train_split="train", test_split="validation", image_size=224, channels=3, data_dir=None
  )
  config.model = dict(name="resnet", depth=50, width=1.0, small_stem=False)
  # block_size (e.g. 1024): blockwise NT-Xent in shard_map, for global batches where (2N)^2 similarities do not fit.
  config.simclr = dict(
    temperature=0.1, proj_dim=128, proj_layers=2, proj_hidden_dim=None, block_size=config_dict.placeholder(int)
  )
  config.augment.update(jitter_strength=1.0, blur_prob=0.5)
  config.dtype = "bfloat16"
  config.batch_size = 4096
  config.epochs = 100
  config.optimizer = dict(
    name="lars", base_lr=0.3, lr_scaling="linear", weight_decay=1e-6, warmup_steps=3120, momentum=0.9
  )  # 10 epochs of 312 steps.
  config.checkpoint_every = 5000
  config.eval_batch_size = 1000
  config.evals = dict(linear=dict(type="linear_probe", label_budgets=("all",), steps=20000))
  if "runlocal" in arg.split(","):
    config.dataset.image_size = 64
    config.model.depth = 18
    config.model.width = 0.25
    config.dtype = "float32"
    config.batch_size = 32
    config.total_steps = 10
    config.log_every = 2
    config.evals.linear.steps = 50
  return config
