r"""MoCo v2 on scikit-learn's digits: the embedded default's data, encoder, budget (100 epochs, batch 256) and
evaluators (configs/simclr_digits.py), with a momentum key encoder, a queue of negatives and the MLP head.

  python -m ssljax.train --config configs/moco_v2_digits.py --workdir /tmp/ssljax/moco_v2_digits
  python -m ssljax.train --config configs/moco_v2_digits.py:runlocal --workdir /tmp/ssljax/moco_v2_digits_smoke

Deviations for 1,437 training images and 561 steps: a queue of 512 keys (2 batches; 65,536 would hold each
image ~45 times, all false negatives), key momentum 0.99 (0.999 averages over more steps than the run has),
SimCLR-digits' LARS lr 0.3 x B/256. InfoNCE at tau 0.2 as the paper.
Measured alone on 2 CPU cores (2026-12-04, 6.5 min for the table's command): fast linear probe 0.892 at 10
labels per class (raw pixels 0.853), 0.986 on all labels (0.972); 10% fine-tune 0.939 (0.533 from random init).
benchmarks/RESULTS.md, "Every method on digits, re-run alone after issue 20", has every column and its protocol.
"""

from configs import simclr_digits


def get_config(arg: str = ""):
  config = simclr_digits.get_config(arg)
  del config["simclr"]
  config.method = "moco_v2"
  config.moco_v2 = dict(proj_dim=64, hidden_dim=128, queue_size=512, temperature=0.2, momentum=0.99)
  if "runlocal" in arg.split(","):
    config.moco_v2.queue_size = 128
  return config
