r"""CLIP ViT-B/16 with the paper's settings (Radford et al. 2021, Tables 19-20): image tower ViT-B/16 at 224 px,
text tower 12 layers of width 512 with 8 heads, causal, 77 tokens; embeddings of 512; batch 32,768; AdamW
(beta 0.9 / 0.98, eps 1e-6), lr 5e-4, weight decay 0.2 (not on gains, biases or the temperature), 2,000 warmup
steps then cosine; 32 epochs; temperature from 0.07, clamped at 1/100; bf16.

  python -m ssljax.train --config configs/clip_vit_base.py --workdir gs://BUCKET/clip_vit_b16 \
    --config.text.tokenizer=/path/to/clip/tokenizer.json
  python -m ssljax.train --config configs/clip_vit_base.py:runlocal --workdir /tmp/ssljax/clip_vit_b16_local

Data: a tfds image-text dataset by name whose `caption_feature` holds its captions (default `coco_captions`,
118k images with 5 captions each; one is drawn per step; on COCO alone this recipe is far from the paper's data
and its 32 epochs are ~115 steps), or webdataset-style tar shards as img2dataset writes LAION / CC / DataComp:
`--config.dataset.name=tar --config.dataset.data_dir=D` reads `D/train/*.tar` and `D/val/*.tar` (KEY.jpg +
KEY.txt), each process only its own shards. Tokenizer: pass CLIP's own BPE (`tokenizer.json` of
openai/clip-vit-base-patch16, vocab 49,408; its end-of-text token is found by name); the default is the digits
tokenizer shipped here, which only makes the config build. Images: centre-cropped 224 px, random crops on the device.

Expected: not measured with this codebase. The paper's zero-shot ImageNet figures need its 400M pairs and its
80-prompt ImageNet protocol, which `zero_shot` does not implement yet, so none is quoted here.
"""

import ml_collections
from ml_collections import config_dict

from configs import clip_digits


def get_config(arg: str = ""):
  config = clip_digits.get_config()
  config.dataset = dict(
    name="coco_captions",
    train_split="train",
    test_split="val",
    image_size=224,
    channels=3,
    data_dir=config_dict.placeholder(str),
    skip_bad_files=False,
    center_crop=1.0,
    host_crops=False,
    worker_processes=0,
    captions="feature",
    caption_feature="captions/text",
  )
  config.model = dict(name="vit", variant="B", patch_size=16, pool="cls")
  config.text = dict(
    tokenizer="digits_tokenizer.json", context_length=77, width=512, depth=12, num_heads=8, causal=True
  )
  config.clip.update(embed_dim=512, init_temperature=0.07, max_logit_scale=100.0, block_size=4096)
  config.augment.update(crop_scale=(0.9, 1.0))  # open_clip's RandomResizedCrop(scale=(0.9, 1.0)).
  config.dtype = "bfloat16"
  config.batch_size = 32768
  config.epochs = 32
  config.optimizer = dict(
    name="adamw",
    base_lr=5e-4,
    lr_scaling="none",
    weight_decay=0.2,
    b1=0.9,
    b2=0.98,
    eps=1e-6,
    warmup_steps=2000,
    warmup_epochs=0,
  )
  config.log_every = 100
  config.checkpoint_every = 2000
  config.eval_batch_size = 1000
  config.eval_baselines = ()
  config.evals = ml_collections.ConfigDict(
    dict(zero_shot=dict(config.evals.zero_shot.to_dict(), templates=("a photo of a {}.",)))
  )
  if "runlocal" in arg.split(","):
    config.dataset.image_size = 32
    config.model.update(variant="Ti", patch_size=8, width=64, depth=2, num_heads=2)
    config.text.update(context_length=16, width=64, depth=2, num_heads=2)
    config.clip.update(embed_dim=32, block_size=None)
    config.dtype = "float32"
    config.batch_size = 32
    config.total_steps = 10
    config.log_every = 2
    config.optimizer.warmup_steps = 2
  return config
