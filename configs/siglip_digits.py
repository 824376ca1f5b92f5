r"""SigLIP on scikit-learn's digits with *synthetic* captions (see configs/clip_digits.py: the same data, towers
and evaluators). Minutes on a 2-core CPU.

  python -m ssljax.train --config configs/siglip_digits.py --workdir /tmp/ssljax/siglip_digits
  python -m ssljax.train --config configs/siglip_digits.py:runlocal --workdir /tmp/ssljax/siglip_digits_smoke

What differs from CLIP, as in the SigLIP paper: the sigmoid loss over every pair with learnable t' = log 10 and
b = -10, a bidirectional text tower pooled at its EOS token, AdamW with b2 0.95 and weight decay 1e-4.

Expected (2-core CPU, 4 min 13 s with evaluation; measured 2026-12-05
before the text tower took CLIP's init): zero-shot accuracy 0.969 on the 360 test
digits (chance 0.1); linear probe 10 per class 0.956 vs raw pixels 0.853; see benchmarks/RESULTS.md.
"""

from ml_collections import config_dict

from configs import clip_digits


def get_config(arg: str = ""):
  config = clip_digits.get_config(arg)
  config.method = "siglip"
  embed_dim = config.clip.embed_dim
  del config["clip"]
  config.siglip = dict(
    embed_dim=embed_dim,
    init_temperature=10.0,
    init_bias=-10.0,
    block_size=config_dict.placeholder(int),
  )
  config.text.causal = False
  config.optimizer.update(b2=0.95, eps=1e-8, weight_decay=1e-4)
  return config
