r"""CLIP on scikit-learn's digits with *synthetic* captions: each image's caption is made from its label through a
template ("a photo of the number seven."), drawn anew every step from 7 templates; zero-shot prompts use 3 other
templates. Minutes on a 2-core CPU.

  python -m ssljax.train --config configs/clip_digits.py --workdir /tmp/ssljax/clip_digits
  python -m ssljax.train --config configs/clip_digits.py:runlocal --workdir /tmp/ssljax/clip_digits_smoke

A small ViT (width 128, depth 4, 4 heads, 4 px patches of 16 px images) and a causal text transformer (width 64,
depth 2, 4 heads, 16 tokens of a byte-level BPE trained offline on the captions: `python -m ssljax.text`),
projected to 64 dimensions; learnable temperature from 0.07, clamped at 1/100. AdamW with CLIP's betas (0.9, 0.98),
eps 1e-6 and weight decay 0.2 (not on gains, biases or the temperature), cosine schedule with warmup.

What the embedded default cannot show: the captions carry exactly the label, so CLIP here is supervised learning
through text (ten caption classes, many pairs sharing a caption); it exercises the two towers, the loss over the
global batch, zero-shot classification and retrieval, not what web captions teach. Real image-text data:
config.dataset.name = a tfds dataset with captions (not yet read; see issue 25).

Expected (2-core CPU, 3 min 45 s with evaluation; measured 2026-12-05
before the text tower took CLIP's init): zero-shot accuracy 0.958 on the 360 test
digits (chance 0.1); linear probe 10 per class 0.939 vs raw pixels 0.853; image->text / text->image recall@1
0.147 / 0.189 (see benchmarks/RESULTS.md for why these are low by construction).
"""

from ml_collections import config_dict

from configs import mae_digits
from ssljax import text


def get_config(arg: str = ""):
  # MAE's digits setup: 16 px digits, the small ViT, and its only augmentation, a mild random resized crop (CLIP's
  # is a random crop of the resized image; digits allow no flips).
  config = mae_digits.get_config()
  del config["mae"]
  config.method = "clip"
  config.dataset.captions = "label_templates"
  config.text = dict(tokenizer="digits_tokenizer.json", context_length=16, width=64, depth=2, num_heads=4, causal=True)
  config.clip = dict(
    embed_dim=64, init_temperature=0.07, max_logit_scale=100.0, block_size=config_dict.placeholder(int)
  )

  config.epochs = 100
  config.optimizer = dict(
    name="adamw",
    base_lr=1e-3,
    lr_scaling="none",
    weight_decay=0.2,
    b1=0.9,
    b2=0.98,
    eps=1e-6,
    warmup_steps=50,
    warmup_epochs=0,
  )

  config.checkpoint_every = 200
  config.evals = dict(
    # Prompts the training captions never used (text.ZERO_SHOT_TEMPLATES), averaged per class.
    zero_shot=dict(
      type="zero_shot", templates=text.ZERO_SHOT_TEMPLATES, ks=(1, 5, 10), max_examples=5000, every_steps=0
    ),
    linear=dict(type="linear_probe", label_budgets=("all", 10), steps=500, seed=0, every_steps=0),
    knn=dict(type="knn", ks=(20, 200), temperature=0.07, every_steps=0),
    fewshot=dict(type="fewshot", shots=(1, 10), l2_reg=0.1, seeds=(0, 1, 2, 3, 4), every_steps=0),
  )
  if "runlocal" in arg.split(","):  # A smoke run of the whole pipeline.
    config.dataset.image_size = 8
    config.model.update(width=32, depth=1, num_heads=2)
    config.text.update(width=32, depth=1, num_heads=2)
    config.clip.embed_dim = 16
    config.batch_size = 64
    config.total_steps = 12
    config.log_every = 2
    config.checkpoint_every = 4
    config.evals.linear.steps = 100
    config.evals.knn.ks = (20,)
  if "train_only" in arg.split(","):  # Pretraining without evaluation.
    config.evals = {}
    config.eval_baselines = ()
  return config
