r"""SigLIP ViT-B/16 with the paper's settings (Zhai et al. 2023): CLIP's towers (configs/clip_vit_base.py) with a
bidirectional text tower pooled at EOS, the sigmoid loss with t' = log 10 and b = -10, batch 32,768, AdamW with
beta2 0.95 (the paper's fix for large-batch instability), lr 1e-3 and weight decay 1e-4 in big_vision's decoupled
form (p -= wd x schedule x p, not multiplied by the lr; optax's adamw multiplies by it, so 1e-4 / 1e-3 = 0.1
here), 5,000 warmup steps (our choice) then cosine; each device's texts pass round the ring of devices.

  python -m ssljax.train --config configs/siglip_vit_base.py --workdir gs://BUCKET/siglip_vit_b16 \
    --config.text.tokenizer=/path/to/tokenizer.json
  python -m ssljax.train --config configs/siglip_vit_base.py:runlocal --workdir /tmp/ssljax/siglip_vit_b16_local

Data and tokenizer: as configs/clip_vit_base.py (SigLIP's own vocabulary is a 32k SentencePiece; any
`tokenizers` JSON with an end-of-text token works). Expected: not measured with this codebase; the paper's figures
need WebLI and its ImageNet zero-shot protocol, so none is quoted here.
"""

from ml_collections import config_dict

from configs import clip_vit_base


def get_config(arg: str = ""):
  config = clip_vit_base.get_config(arg)
  config.method = "siglip"
  section = config.clip
  del config["clip"]
  config.siglip = dict(
    embed_dim=section.embed_dim, init_temperature=10.0, init_bias=-10.0, block_size=config_dict.placeholder(int)
  )
  config.siglip.block_size = section.block_size
  config.text.causal = False
  config.optimizer.update(base_lr=1e-3, b2=0.95, eps=1e-8, weight_decay=0.1)  # big_vision's wd 1e-4 / lr.
  if "runlocal" not in arg.split(","):
    config.optimizer.warmup_steps = 5000
  return config
