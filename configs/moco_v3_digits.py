r"""MoCo v3 on scikit-learn's digits: the embedded default's data, encoder, budget (100 epochs, batch 256) and
evaluators (configs/simclr_digits.py), with MoCo v3's projector + predictor, momentum encoder and symmetric
in-batch InfoNCE (x 2 tau).

  python -m ssljax.train --config configs/moco_v3_digits.py --workdir /tmp/ssljax/moco_v3_digits
  python -m ssljax.train --config configs/moco_v3_digits.py:runlocal --workdir /tmp/ssljax/moco_v3_digits_smoke

Deviations for 561 steps of batch 256: temperature 0.2 (the paper's ResNet-50 default 1.0 is tuned for batch
4096), SimCLR-digits' LARS lr 0.3 x B/256 (lr after momentum, as MoCo v3's LARS); momentum 0.99 -> 1 as the
paper. BYOL-style asymmetric views.
Measured alone on 2 CPU cores (2026-12-04, 12.5 min for the table's command): fast linear probe 0.872 at 10
labels per class (raw pixels 0.853), 0.972 on all labels (0.972); 10% fine-tune 0.883 (0.533 from random init).
benchmarks/RESULTS.md, "Every method on digits, re-run alone after issue 20", has every column and its protocol.
"""

from configs import byol_imagenet, moco_v3_imagenet, simclr_digits


def get_config(arg: str = ""):
  config = simclr_digits.get_config(arg)
  del config["simclr"]
  config.method = "moco_v3"
  config.moco_v3 = dict(moco_v3_imagenet.PAPER_MOCO_V3, proj_dim=64, hidden_dim=256, temperature=0.2)
  config.views = byol_imagenet.ASYMMETRIC_VIEWS
  config.optimizer.lr_after_momentum = True  # MoCo v3's LARS: the learning rate after momentum.
  return config
