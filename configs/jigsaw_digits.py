r"""Jigsaw puzzles (Noroozi & Favaro 2016) on scikit-learn's digits: the embedded default's data, encoder, budget
(100 epochs, batch 256) and evaluators (configs/simclr_digits.py), with the pretext tasks' recipe
(configs/rotation_digits.py).

  python -m ssljax.train --config configs/jigsaw_digits.py --workdir /tmp/ssljax/jigsaw_digits
  python -m ssljax.train --config configs/jigsaw_digits.py:runlocal --workdir /tmp/ssljax/jigsaw_digits_smoke

The paper at digits' scale: a 32 px view of each image (the paper: 225 px) cut into 3 x 3 tiles of 8 px (64)
with 2 px gaps and +-1 px jitter (an 11 px gap and +-5 px), each tile normalised on its own, shuffled by one of 100
permutations of maximal Hamming distance; the tiles' features concatenated into a 256-wide hidden layer (fc7). The
encoder sees 8 px tiles in training and whole 16 px digits in evaluation; an 8 x 8 digit has little inside a
third of it, so this task is expected to be weak here. Results: benchmarks/RESULTS.md, "Pretext tasks on digits".
"""

from configs import rotation_digits, simclr_digits


def get_config(arg: str = ""):
  settings = dict(
    num_permutations=100,
    permutation_seed=0,
    view_size=32,
    patch_size=8,
    gap=2,
    jitter=1,
    normalize_parts=True,
    hidden_dim=256,
  )
  return rotation_digits.pretext_recipe(simclr_digits.get_config(arg), "jigsaw", settings)
