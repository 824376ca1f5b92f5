r"""Gated PixelCNN (van den Oord et al. 2016) on scikit-learn's digits: the embedded default's data (16 px, 256
levels per pixel), budget (100 epochs, batch 256) and feature evaluators, and the model's own: held-out bits per
dimension against the uniform distribution and a per-pixel independent model (`likelihood`), and samples
(`pixelcnn_samples.png`). `:conditional` conditions every gate on the class (rows of samples by class; no online
probe: the training features see the label); `:super_resolution` on the image averaged over 4 x 4 blocks.

  python -m ssljax.train --config configs/pixelcnn_digits.py --workdir /tmp/ssljax/pixelcnn_digits
  python -m ssljax.train --config configs/pixelcnn_digits.py:conditional --workdir /tmp/ssljax/pixelcnn_cond
  python -m ssljax.train --config configs/pixelcnn_digits.py:runlocal --workdir /tmp/ssljax/pixelcnn_smoke

The paper's architecture at digits' scale: a 7 x 7 mask-A first layer, then 3 x 3 gated layers (8 in all, 32
features: 0.9 s a step on 2 cores, 2.4 s with 64; the paper: 15 layers of 384 on 32 px CIFAR-10), Adam 1e-3 (no
weight decay), no augmentation. The samples are drawn sub-pixel by sub-pixel (256 passes of the network): scoring
100 of them (`num_scored`) takes about 3 min on 2 cores.
Digits are 8 x 8 with 17 grey levels, shown here at 16 px as every method sees them (bilinear upsampling makes
the in-between pixels easier to predict than in natural images). Results: benchmarks/RESULTS.md.
"""

from configs import simclr_digits


def get_config(arg: str = ""):
  args = arg.split(",")
  config = simclr_digits.get_config(",".join(a for a in args if a not in ("conditional", "super_resolution")))
  del config["simclr"]
  config.method = "pixelcnn"
  config.pixelcnn = dict(
    features=32,
    num_layers=8,
    first_kernel=7,
    kernel=3,
    conditional="conditional" in args,
    super_resolution=4 if "super_resolution" in args else 0,
  )
  config.optimizer = dict(
    name="adamw", base_lr=1e-3, lr_scaling="none", weight_decay=0.0, warmup_steps=0, b1=0.9, b2=0.999
  )
  if "conditional" in args:  # Its features see the label: the online probe would read it back.
    config.online_probe = False
  if "train_only" not in args:
    evals = {k: v for k, v in config.evals.to_dict().items() if k in ("linear", "knn", "fewshot")}
    config.evals = dict(
      evals,
      likelihood=dict(type="likelihood", every_steps=0),
      samples=dict(type="pixelcnn_samples", every_steps=0, num_images=20, num_scored=100, temperature=1.0, seed=0),
    )
  if "runlocal" in args:
    config.pixelcnn.update(features=16, num_layers=3)
    if "samples" in config.evals:
      config.evals.samples.num_scored = 20
  return config
