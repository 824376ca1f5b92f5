r"""SwAV on scikit-learn's digits: the embedded default's data, encoder, budget (100 epochs, batch 256) and
evaluators (configs/simclr_digits.py), with multi-crop (2 global 16 px + 4 local 8 px crops), prototypes and
Sinkhorn-Knopp codes.

  python -m ssljax.train --config configs/swav_digits.py --workdir /tmp/ssljax/swav_digits
  python -m ssljax.train --config configs/swav_digits.py:runlocal --workdir /tmp/ssljax/swav_digits_smoke

As the paper's batch-256 recipe: temperature 0.1, epsilon 0.05, 3 Sinkhorn iterations on crops 0 and 1, LARS as
apex's LARC (every parameter, weight decay 1e-6, lr 0.6 x B/256, the learning rate after momentum), no warmup,
cosine to 0.001 x the peak, prototypes frozen for the first epoch (5 steps). Deviations: 64 prototypes (3000 for
ImageNet's 1000 classes), head 256 -> 64, no queue (each Sinkhorn batch holds 256 of 1,437 images); local crops
of scale 0.1 - 0.3 (digits are 8 px; ImageNet's 0.05 - 0.14 of 224 px).
Measured alone on 2 CPU cores (2026-12-04, 13.5 min for the table's command): SwAV does not learn useful features
here: fast linear probe 0.717 at 10 labels per class (raw pixels 0.853), 0.911 on all labels (0.972), 10%
fine-tune 0.494 (0.533 from random init); its loss only fell from log 64 = 4.16 to 3.99.
benchmarks/RESULTS.md, "Redundancy reduction and clustering on digits".
"""

from configs import simclr_digits


def get_config(arg: str = ""):
  config = simclr_digits.get_config(arg)
  del config["simclr"]
  config.method = "swav"
  config.swav = dict(
    proj_dim=64,
    hidden_dim=256,
    num_prototypes=64,
    temperature=0.1,
    epsilon=0.05,
    sinkhorn_iters=3,
    crops_for_assign=(0, 1),
    freeze_prototypes_steps=5,
    queue_length=0,
    epoch_queue_starts=0,
  )
  config.multicrop = dict(num_local=4, local_size=8, crop_scale=(0.1, 0.3))
  config.optimizer = dict(
    name="lars",
    base_lr=0.6,
    lr_scaling="linear",
    weight_decay=1e-6,
    warmup_steps=0,
    warmup_epochs=0,
    momentum=0.9,
    lr_after_momentum=True,
    decay_norm_and_bias=True,
    end_lr_ratio=0.001,
  )
  if "runlocal" in arg.split(","):
    # A queue of two steps' embeddings that joins at the third step, so that the smoke tests go through it.
    config.swav.update(proj_dim=16, hidden_dim=32, num_prototypes=16, freeze_prototypes_steps=1, queue_length=128)
    config.multicrop.num_local = 2
  return config
