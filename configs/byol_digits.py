r"""BYOL on scikit-learn's digits: the embedded default's data, encoder, budget (100 epochs, batch 256) and
evaluators (configs/simclr_digits.py), with BYOL's projector + predictor, EMA target and asymmetric views.

  python -m ssljax.train --config configs/byol_digits.py --workdir /tmp/ssljax/byol_digits
  python -m ssljax.train --config configs/byol_digits.py:runlocal --workdir /tmp/ssljax/byol_digits_smoke

Deviations for the 561-step budget: target momentum 0.99 -> 1 (the paper's 0.996 averages over ~250 steps, half
of this run) and SimCLR-digits' LARS lr 0.3 x B/256 (the learning rate applied after momentum, as BYOL's LARS).
Measured alone on 2 CPU cores (2026-12-04, 12.6 min for the table's command): fast linear probe 0.842 at 10
labels per class (raw pixels 0.853), 0.953 on all labels (0.972); 10% fine-tune 0.792 (0.533 from random init).
benchmarks/RESULTS.md, "Every method on digits, re-run alone after issue 20", has every column and its protocol.
"""

from configs import byol_imagenet, simclr_digits


def get_config(arg: str = ""):
  config = simclr_digits.get_config(arg)
  del config["simclr"]
  config.method = "byol"
  config.byol = dict(proj_dim=64, hidden_dim=256, momentum=0.99, final_momentum=1.0)
  config.views = byol_imagenet.ASYMMETRIC_VIEWS  # Blur always / rarely, solarisation only on the second view.
  config.optimizer.lr_after_momentum = True  # BYOL's LARS: the learning rate after momentum.
  return config
