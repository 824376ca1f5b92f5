r"""MoCo v3 on ImageNet (Chen, Xie & He 2021), facebookresearch/moco-v3's recipes, batch 4096, bf16:

- `:resnet50` (default): LARS lr 0.6 x B/256 (the repository's `--lr=.6` for 100 epochs; lr after momentum, as
  its LARS), weight decay 1e-6 (not on biases and BatchNorm), 10 warmup epochs, 100 epochs, crops from 0.2 of
  the image (CONFIG.md's `--crop-min=.2`), temperature 1.0, momentum 0.99 -> 1 (cosine), projector 2 layers,
  predictor 2 layers ending in a plain Dense, hidden 4096, output 256; torchvision's ResNet-50 init with
  zero_init_residual. Expected: 68.9% linear top-1 (the repository's 100-epoch ResNet-50 row) under its linear
  protocol (`linear_moco_v3/ssl/all`: SGD lr 0.1 x B/256 on frozen features, 90 epochs, batch 1024).
- `:vit_small` / `:vit_base`: ViT-S/16 (12 heads, as moco-v3's `vit_small`; DeiT's has 6) or ViT-B/16, q, k and
  v initialised as three Xavier matrices, class token std 1e-6, AdamW lr 1.5e-4 x B/256, weight decay 0.1
  on every parameter (the reference hands all to AdamW), 40 warmup epochs, 300 epochs, crops from 0.08,
  temperature 0.2, 3-layer projector, predictor ending in BatchNorm without affine, the random patch projection
  frozen. Expected: 73.2% (ViT-S) / 76.7% (ViT-B) linear top-1 (the paper's Table 1) under its ViT linear
  protocol (`linear_moco_v3_vit/ssl/all`: SGD lr 3 x B/256, 90 epochs).

  python -m ssljax.train --config configs/moco_v3_imagenet.py:vit_small --workdir gs://BUCKET/mocov3_vits
  python -m ssljax.train --config configs/moco_v3_imagenet.py:vit_small,runlocal --workdir /tmp/ssljax/mocov3_local

Augmentations: BYOL's asymmetric views. Not yet measured with this codebase.
"""

from configs import byol_imagenet, simclr_imagenet

PAPER_MOCO_V3 = dict(  # facebookresearch/moco-v3's ResNet-50 settings.
  proj_dim=256,
  hidden_dim=4096,
  proj_layers=2,
  temperature=1.0,
  momentum=0.99,
  final_momentum=1.0,
  freeze_patch_embed=False,
)


def get_config(arg: str = ""):
  args = arg.split(",")
  config = simclr_imagenet.get_config(arg)
  del config["simclr"]
  config.method = "moco_v3"
  config.moco_v3 = dict(PAPER_MOCO_V3)
  config.augment.update(byol_imagenet.BYOL_AUGMENT, crop_scale=(0.2, 1.0))
  config.views = byol_imagenet.ASYMMETRIC_VIEWS
  config.model.update(conv_init="he_fan_out", zero_init_residual=True)
  config.optimizer = dict(
    name="lars",
    base_lr=0.6,
    lr_scaling="linear",
    weight_decay=1e-6,
    warmup_steps=0,
    warmup_epochs=10,  # 10 epochs of 312 steps.
    momentum=0.9,
    lr_after_momentum=True,
  )
  protocol = "moco_v3"
  variant = {"vit_small": "S", "vit_base": "B"}.get(next((a for a in args if a.startswith("vit_")), ""), None)
  if variant:
    config.model = dict(name="vit", variant=variant, patch_size=16, pool="cls", qkv_init="separate", cls_token_std=1e-6)
    if variant == "S":
      config.model.num_heads = 12
    config.augment.crop_scale = (0.08, 1.0)
    config.moco_v3.update(proj_layers=3, temperature=0.2, freeze_patch_embed=True)
    config.epochs = 300
    config.optimizer = dict(
      name="adamw",
      base_lr=1.5e-4,
      lr_scaling="linear",
      weight_decay=0.1,
      warmup_steps=0,
      warmup_epochs=40,
      b1=0.9,
      b2=0.999,
      decay_norm_and_bias=True,
    )  # 40 epochs.
    protocol = "moco_v3_vit"
  simclr_imagenet.set_paper_evals(config, protocol, arg)
  if "runlocal" in args:
    config.moco_v3.update(proj_dim=64, hidden_dim=128)
    if variant:
      config.model.update(width=64, depth=2, num_heads=4)
  return config
