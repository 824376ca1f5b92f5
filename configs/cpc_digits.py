r"""Contrastive predictive coding v2 (Henaff et al. 2020) on scikit-learn's digits: the embedded default's data,
budget (100 epochs, batch 256) and evaluators (configs/simclr_digits.py).

  python -m ssljax.train --config configs/cpc_digits.py --workdir /tmp/ssljax/cpc_digits
  python -m ssljax.train --config configs/cpc_digits.py:runlocal --workdir /tmp/ssljax/cpc_smoke

The paper at digits' scale: a 20 px view of each image (the paper: 224 -> 256 px) cut into a 4 x 4 grid of 8 px
patches overlapping by half (a 7 x 7 grid of 64 px); the patch encoder is the embedded default's ResNet with
LayerNorm in place of BatchNorm (as CPC v2), the context network the paper's 5 masked residual blocks (256 wide),
targets and predictions 64-dimensional, the predictions scaled by 0.1. The paper predicts 3 rows ahead only
(skipping 1 and 2, which overlap their context or touch it); a 4-row grid predicts 2 and 3 rows ahead (2 rows
ahead touches its context's last row without overlapping it). Negatives: every patch of every image in the global
batch. Adam at 1e-3, no weight decay; light crops, no colour augmentation (grey digits; the paper's per-patch
augmentations are not here). The feature evaluators read the patch grid of the whole image at 20 px, each patch's
features averaged (the paper's linear classification); fine-tuning trains the encoder on whole 16 px images.
Results: benchmarks/RESULTS.md, "Pretext tasks and auto-encoders on digits".
"""

from configs import simclr_digits


def get_config(arg: str = ""):
  config = simclr_digits.get_config(arg)
  del config["simclr"]
  config.method = "cpc"
  config.model.normalization = "layer"
  runlocal = "runlocal" in arg.split(",")  # 8 px images: a 12 px view, a 3 x 3 grid.
  config.cpc = dict(
    view_size=12 if runlocal else 20,
    patch_size=8,
    patch_stride=2 if runlocal else 4,
    offsets=(2,) if runlocal else (2, 3),
    context_blocks=5,
    context_dim=64 if runlocal else 256,
    target_dim=64,
    prediction_scale=0.1,
  )
  config.augment.update(crop_scale=(0.5, 1.0), jitter_prob=0.0, blur_prob=0.0)
  config.optimizer = dict(
    name="adamw", base_lr=1e-3, lr_scaling="none", weight_decay=0.0, warmup_steps=0, b1=0.9, b2=0.999
  )
  return config
