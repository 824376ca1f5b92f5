r"""CycleGAN (Zhu et al. 2017) on scikit-learn's digits: unpaired translation between the digits (domain A) and
"digits_bold" (domain B): the training digits with their strokes thickened by a 3 x 3 grey-level dilation (B's
training images are exactly the dilations of A's). The loader draws each B image uniformly at random afresh at
every step, independently of the A image beside it, and no loss couples an image with its own dilation: the
training signal is unpaired. The test split is paired (test digit i and its dilation), which makes the
translations measurable against the truth.
What this embedded pair cannot show: translation of texture, colour or shape between unrelated image collections
(`configs/cyclegan_horse2zebra.py` reads the paper's data by name).

  python -m ssljax.train --cpu_devices=1 --config configs/cyclegan_digits.py --workdir /tmp/ssljax/cyclegan_digits
  python -m ssljax.train --config configs/cyclegan_digits.py:runlocal --workdir /tmp/ssljax/cyclegan_smoke

Expected (measured, benchmarks/RESULTS.md): see the "CycleGAN on digits" section.

The paper's recipe (its appendix 7 and the authors' code): ResNet generators with instance normalisation, 70 x 70
PatchGAN discriminators (here 2 stride-2 layers: 2 x 2 patches of a 16 px image), least-squares adversarial
losses, cycle weight 10, identity weight 0.5, a history of 50 generated images, Adam with lr 2e-4 and b1 0.5 for
both players, the rate constant for the first half of training and then decaying linearly to 0. Smaller than the
paper: generators 16 wide with 6 residual blocks (paper: 64, 9 at 256 px), discriminators 16 wide, batch 16 (paper:
1; with instance normalisation a batch averages its images' gradients, with 16x fewer updates per epoch), no flips
(digits are not mirror-symmetric).
"""

from configs import simclr_digits


def get_config(arg: str = ""):
  args = arg.split(",")
  config = simclr_digits.get_config(",".join(a for a in args if a != "train_only") + ",train_only")
  del config["simclr"]
  config.method = "cyclegan"
  config.online_probe = False  # Four networks in two players, no probe.
  config.dataset.domain_b = dict(name="digits_bold", train_split="train", test_split="test")
  config.cyclegan = dict(
    generator_width=16,
    residual_blocks=6,
    discriminator_width=16,
    discriminator_layers=2,
    cycle_weight=10.0,
    identity_weight=0.5,
    pool_size=50,
    flip=False,
  )
  config.batch_size = 16
  config.epochs = 30
  config.optimizer = dict(
    name="adamw",
    base_lr=2e-4,
    lr_scaling="none",
    weight_decay=0.0,
    warmup_steps=0,
    schedule="linear_decay",
    decay_start_epoch=15,
    b1=0.5,
  )
  config.checkpoint_every = 500
  if "train_only" not in args:
    config.evals = dict(
      translations=dict(type="cyclegan_translations", every_steps=0, num_images=16, paired_test=True, keeps_class=True)
    )
  if "runlocal" in args:
    # 16 px, not the other smoke configs' 8: at 8 px the generators' bottleneck would be 2 x 2, whose instance
    # normalisation (the variance of 4 values) is nearly degenerate.
    config.dataset.image_size = 16
    config.cyclegan.update(generator_width=8, residual_blocks=1, discriminator_width=8, discriminator_layers=2)
    config.cyclegan.pool_size = 8
    config.optimizer.decay_start_epoch = 0
  return config
