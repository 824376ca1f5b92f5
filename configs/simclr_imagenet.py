r"""SimCLR v1 on ImageNet: ResNet-50, batch 4096, LARS (lr 0.3 x B/256, weight decay 1e-6), temperature 0.1,
100 epochs with 10 warmup epochs, full colour distortion (strength 1.0) and blur, as in the SimCLR paper.

  python -m ssljax.train --config configs/simclr_imagenet.py --workdir gs://BUCKET/simclr_imagenet
  python -m ssljax.train --config configs/simclr_imagenet.py:runlocal --workdir /tmp/ssljax/simclr_imagenet_local

Needs tfds `imagenet2012` as ArrayRecord: download its tar files yourself, then
`python -m ssljax.prepare imagenet2012 --data_dir D --manual_dir DIR_OF_TARS` and pass
`--config.dataset.data_dir=D`. Each view's random resized crop is cut from the full image while decoding on the host
(`dataset.host_crops`), the rest of the augmentation runs on the device; evaluation images are resized to 256 px
(shorter side) and centre-cropped to 224 (`dataset.center_crop` 0.875). Expected: 0.64-0.66 top-1 after 100 epochs
(the paper's Figure B.1 at batch 4096) under SimCLR's linear evaluation (Nesterov SGD on the frozen encoder, 90
epochs, crops and flips): our `linear_simclr/ssl/all`, not the fast probe `linear_fast/...`; not yet measured with
this codebase.
"""

from ml_collections import config_dict

from configs import simclr_cifar10
from ssljax.evaluators import linear_eval


def get_config(arg: str = ""):
  config = simclr_cifar10.get_config()
  config.dataset = dict(
    name="imagenet2012",
    train_split="train",
    test_split="validation",
    image_size=224,
    channels=3,
    data_dir=config_dict.placeholder(str),
    skip_bad_files=False,
    center_crop=0.875,  # Evaluation images: 224 px out of 256, as the papers.
    host_crops=True,  # Views cropped from the full decoded image on the host, as the reference pipelines.
    host_resize="bilinear",  # tf.image.resize's, no antialiasing: SimCLR's tf.data pipeline.
    worker_processes=0,  # > 0: batches also read in that many processes (many-core hosts).
  )
  config.model = dict(name="resnet", depth=50, width=1.0, small_stem=False, conv_init="simclr")
  # block_size (e.g. 1024): blockwise NT-Xent in shard_map, for global batches where (2N)^2 similarities do not fit.
  config.simclr.update(temperature=0.1, proj_dim=128)
  config.augment.update(jitter_strength=1.0, blur_prob=0.5)
  config.dtype = "bfloat16"
  config.batch_size = 4096
  config.epochs = 100
  config.optimizer = dict(
    name="lars", base_lr=0.3, lr_scaling="linear", weight_decay=1e-6, warmup_steps=0, warmup_epochs=10, momentum=0.9
  )  # 10 epochs of 312 steps.
  config.checkpoint_every = 5000
  config.eval_batch_size = 1000
  set_paper_evals(config, "simclr", arg)
  if "runlocal" in arg.split(","):
    config.dataset.image_size = 64
    config.model.depth = 18
    config.model.width = 0.25
    config.dtype = "float32"
    config.batch_size = 32
    config.total_steps = 10
    config.log_every = 2
  return config


def set_paper_evals(config, protocol: str, arg: str, **overrides):
  """`config.evals`: the fast linear probe and the paper's linear evaluation `linear_<protocol>` (a protocol of
  `linear_eval.PROTOCOLS`, at the paper's batch size; `overrides` replace its settings), shrunk for runlocal."""
  config.evals = dict(
    linear=dict(type="linear_probe", label_budgets=("all",), steps=20000, seed=0, every_steps=0),
    **{f"linear_{protocol}": linear_eval.paper_protocol(protocol, baselines=(), **overrides)},
  )
  if "runlocal" in arg.split(","):
    config.evals.linear.steps = 50
    config.evals[f"linear_{protocol}"].update(batch_size=32, epochs=1)
