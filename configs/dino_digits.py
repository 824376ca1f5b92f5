r"""DINO on scikit-learn's digits: the embedded default's data, encoder, budget (100 epochs, batch 256) and
evaluators (configs/simclr_digits.py), with multi-crop (2 global 16 px + 4 local 8 px crops), the DINO head, an
EMA teacher, centring and sharpening. Evaluation reads the teacher.

  python -m ssljax.train --config configs/dino_digits.py --workdir /tmp/ssljax/dino_digits
  python -m ssljax.train --config configs/dino_digits.py:runlocal --workdir /tmp/ssljax/dino_digits_smoke

As the paper: student temperature 0.1, centre momentum 0.9, AdamW (DINO's default optimizer: lr 5e-4 x B/256,
weight decay 0.04, here 50 warmup steps; with SimCLR-digits' LARS, which leaves biases out of its trust ratio,
the head's biases moved 1000x faster than its N(0, 0.02^2) kernels and its output became a constant),
BYOL-style asymmetric global views, local crops with blur 0.5.
Deviations, each measured (benchmarks/RESULTS.md, "DINO on digits"):
- teacher temperature 0.01 throughout (the paper: 0.04 -> 0.07). The image-specific part of the teacher's
  logits grows only if sharpening outpaces what the student cannot predict across views; at initialisation the
  two crops of a digit correlate 0.12, and at 0.04 (ratio 2.5 to the student's 0.1) that part halved in 54 steps
  towards uniform collapse (entropy near log K); at 0.01 it settles and the crops' correlation rises to 0.59.
- a head of 1,024 prototypes (65,536 for 1,437 images), the last layer frozen for 5 steps (one epoch; ImageNet's
  epoch is 1,251 steps), teacher momentum 0.99 -> 1 for the 561-step run.
Measured: the teacher learns view invariance, yet its features stay below raw pixels on the linear probe (10 per
class 0.686 vs 0.853): see benchmarks/RESULTS.md.
"""

from configs import byol_imagenet, dino_imagenet, simclr_digits


def get_config(arg: str = ""):
  config = simclr_digits.get_config(arg)
  del config["simclr"]
  config.method = "dino"
  config.dino = dict(
    dino_imagenet.PAPER_DINO,
    out_dim=1024,
    hidden_dim=256,
    bottleneck_dim=64,
    momentum=0.99,
    freeze_last_layer_steps=5,
    warmup_teacher_temperature=0.01,
    teacher_temperature=0.01,
  )
  config.optimizer = dict(
    name="adamw",
    base_lr=5e-4,
    lr_scaling="linear",
    weight_decay=0.04,
    warmup_steps=50,
    warmup_epochs=0,
    b1=0.9,
    b2=0.999,
  )
  config.augment.crop_scale = (0.4, 1.0)  # Global crops.
  config.views = byol_imagenet.ASYMMETRIC_VIEWS
  config.multicrop = dict(num_local=4, local_size=8, crop_scale=(0.1, 0.4), blur_prob=0.5)
  if "runlocal" in arg.split(","):
    config.dino.update(out_dim=64, hidden_dim=32, bottleneck_dim=16, warmup_teacher_temperature_epochs=2)
    config.multicrop.num_local = 2
  return config
