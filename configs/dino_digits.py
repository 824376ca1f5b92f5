r"""DINO on scikit-learn's digits: the embedded default's data, encoder, budget (100 epochs, batch 256) and
evaluators (configs/simclr_digits.py), with multi-crop (2 global 16 px + 4 local 8 px crops), the DINO head, an
EMA teacher, centring and sharpening. Evaluation reads the teacher.

  python -m ssljax.train --config configs/dino_digits.py --workdir /tmp/ssljax/dino_digits
  python -m ssljax.train --config configs/dino_digits.py:runlocal --workdir /tmp/ssljax/dino_digits_smoke

As the paper: student temperature 0.1, teacher 0.04 -> 0.07 over the first 30% of the epochs (30 of 100),
centre momentum 0.9, last layer frozen for the first epoch, BYOL-style asymmetric global views, local crops
with blur 0.5. Deviations: a head of 1,024 prototypes (65,536 for 1,437 images), momentum 0.99 -> 1 for the
561-step run, SimCLR-digits' LARS lr 0.3 x B/256. Expected: see benchmarks/RESULTS.md.
"""

from configs import byol_imagenet, dino_imagenet, simclr_digits


def get_config(arg: str = ""):
  config = simclr_digits.get_config(arg)
  del config["simclr"]
  config.method = "dino"
  config.dino = dict(dino_imagenet.PAPER_DINO, out_dim=1024, hidden_dim=256, bottleneck_dim=64, momentum=0.99)
  config.augment.crop_scale = (0.4, 1.0)  # Global crops.
  config.views = byol_imagenet.ASYMMETRIC_VIEWS
  config.multicrop = dict(num_local=4, local_size=8, crop_scale=(0.1, 0.4), blur_prob=0.5)
  if "runlocal" in arg.split(","):
    config.dino.update(out_dim=64, hidden_dim=32, bottleneck_dim=16, warmup_teacher_temperature_epochs=2)
    config.multicrop.num_local = 2
  return config
