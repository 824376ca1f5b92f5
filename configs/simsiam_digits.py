r"""SimSiam on scikit-learn's digits: the embedded default's data, encoder, budget (100 epochs, batch 256) and
evaluators (configs/simclr_digits.py), with SimSiam's projector, bottleneck predictor, stop-gradient and SGD.

  python -m ssljax.train --config configs/simsiam_digits.py --workdir /tmp/ssljax/simsiam_digits
  python -m ssljax.train --config configs/simsiam_digits.py:runlocal --workdir /tmp/ssljax/simsiam_digits_smoke

As the paper: SGD (momentum 0.9, no Nesterov), weight decay 1e-4, cosine schedule, the predictor at a constant
learning rate; 2-layer projector as its CIFAR variant, predictor bottleneck 1/4 of the width. Deviation: base lr
0.1 x B/256 (the paper's 0.05 is for 100 ImageNet epochs; 561 steps here).
Measured alone on 2 CPU cores (2026-12-04, 9.7 min for the table's command): fast linear probe 0.833 at 10
labels per class (raw pixels 0.853), 0.944 on all labels (0.972); 10% fine-tune 0.764 (0.533 from random init).
benchmarks/RESULTS.md, "Every method on digits, re-run alone after issue 20", has every column and its protocol.
"""

from configs import simclr_digits


def get_config(arg: str = ""):
  config = simclr_digits.get_config(arg)
  del config["simclr"]
  config.method = "simsiam"
  config.simsiam = dict(proj_dim=128, proj_layers=2, pred_hidden_dim=32, fix_predictor_lr=True)
  config.optimizer = dict(
    name="sgd",
    base_lr=0.1,
    lr_scaling="linear",
    weight_decay=1e-4,
    warmup_steps=0,
    warmup_epochs=0,
    momentum=0.9,
    nesterov=False,
    decay_norm_and_bias=True,  # The reference's SGD decays every parameter.
  )
  return config
