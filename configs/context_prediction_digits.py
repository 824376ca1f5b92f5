r"""Context prediction (Doersch et al. 2015) on scikit-learn's digits: the embedded default's data, encoder,
budget (100 epochs, batch 256) and evaluators (configs/simclr_digits.py), with the pretext tasks' recipe
(configs/rotation_digits.py).

  python -m ssljax.train --config configs/context_prediction_digits.py --workdir /tmp/ssljax/context_digits
  python -m ssljax.train --config configs/context_prediction_digits.py:runlocal --workdir /tmp/ssljax/context_smoke

The paper at digits' scale: patches of 8 px (the paper: 96) on a 3 x 3 grid of a 32 px view, 3 px apart (half a
patch: 48) with +-1 px jitter (+-7), the centre patch and one of its 8 neighbours, each normalised on its own; the
pair's features concatenated into a 256-wide hidden layer (fc7), an 8-way classifier. Doersch et al.'s defences
against chromatic aberration have nothing to act on in grey digits. Results: benchmarks/RESULTS.md, "Pretext
tasks on digits".
"""

from configs import rotation_digits, simclr_digits


def get_config(arg: str = ""):
  settings = dict(view_size=32, patch_size=8, gap=3, jitter=1, normalize_parts=True, hidden_dim=256)
  return rotation_digits.pretext_recipe(simclr_digits.get_config(arg), "context_prediction", settings)
