r"""MoCo v3 on ImageNet (Chen, Xie & He 2021), facebookresearch/moco-v3's recipes, batch 4096, bf16:

- `:resnet50` (default): LARS lr 0.6 x B/256 (the repository's `--lr=.6` for 100 epochs), weight decay 1e-6,
  10 warmup epochs, 100 epochs, temperature 1.0, momentum 0.99 -> 1 (cosine), projector 2 layers, predictor 2
  layers, hidden 4096, output 256. Expected: 68.9% linear top-1 (the repository's 100-epoch ResNet-50 row).
- `:vit_small` / `:vit_base`: ViT-S/16 or ViT-B/16, AdamW lr 1.5e-4 x B/256, weight decay 0.1, 40 warmup epochs,
  300 epochs, temperature 0.2, 3-layer projector, the random patch projection frozen. Expected: 73.2% (ViT-S) /
  76.7% (ViT-B) linear top-1 (the paper's Table 1, its linear protocol: SGD on frozen features, 90 epochs).

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
  config.augment.update(byol_imagenet.BYOL_AUGMENT)
  config.views = byol_imagenet.ASYMMETRIC_VIEWS
  config.optimizer = dict(
    name="lars", base_lr=0.6, lr_scaling="linear", weight_decay=1e-6, warmup_steps=0, warmup_epochs=10, momentum=0.9
  )  # 10 epochs of 312 steps.
  variant = {"vit_small": "S", "vit_base": "B"}.get(next((a for a in args if a.startswith("vit_")), ""), None)
  if variant:
    config.model = dict(name="vit", variant=variant, patch_size=16, pool="cls")
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
    )  # 40 epochs.
  if "runlocal" in args:
    config.moco_v3.update(proj_dim=64, hidden_dim=128)
    if variant:
      config.model.update(width=64, depth=2, num_heads=4)
  return config
