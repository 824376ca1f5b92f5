r"""Context encoder (Pathak et al. 2016; lecture 002's inpainting) on scikit-learn's digits: the auto-encoders'
data, encoder, budget (100 epochs, batch 256), optimizer and evaluators (configs/autoencoder_digits.py), a hole to
fill instead of the whole image to give back.

  python -m ssljax.train --config configs/context_encoder_digits.py --workdir /tmp/ssljax/context_encoder_digits
  python -m ssljax.train --config configs/context_encoder_digits.py:random_blocks --workdir /tmp/ssljax/ce_blocks
  python -m ssljax.train --config configs/context_encoder_digits.py:runlocal --workdir /tmp/ssljax/ce_smoke

The paper at digits' scale: the central region is half the side (8 of 16 px; the paper 64 of 128) with the inner
6 px dropped and the 1 px band around them, seen by the encoder, also predicted at 10x weight (the paper's 4 px
overlap at 10x); `:random_blocks` drops 4 squares of 4 px at random places (up to a quarter of the image, as the
paper's random blocks). Holes are filled with the mean pixel. Differences: the encoder is the ResNet every method
here trains, whose features are pooled over space (the paper keeps AlexNet's pool5 grid and joins it to the
decoder by a channel-wise fully-connected layer): a 64-wide latent bottleneck carries what the decoder sees; no
adversarial loss (the paper's feature-learning results are also from the reconstruction loss alone).
`inpainting.png` in the workdir shows the completions. Results: benchmarks/RESULTS.md, "Pretext tasks and
auto-encoders on digits".
"""

from configs import autoencoder_digits


def get_config(arg: str = ""):
  args = arg.split(",")
  blocks = "random_blocks" in args
  config = autoencoder_digits.get_config(",".join(a for a in args if a != "random_blocks"))
  del config["autoencoder"]
  if "pictures" in config.evals:
    del config.evals["pictures"]
  config.method = "context_encoder"
  size = config.dataset.image_size  # 16 (:runlocal 8).
  config.context_encoder = dict(
    mask="random_blocks" if blocks else "center",
    hole_size=size // 4 if blocks else 3 * size // 8,
    num_blocks=4,
    overlap=0 if blocks else size // 16,
    overlap_weight=10.0,
    latent_dim=64,
    decoder_width=64,
  )
  if "train_only" not in args:
    config.evals.inpainting = dict(type="inpainting", every_steps=0, num_images=16, seed=0)
  return config
