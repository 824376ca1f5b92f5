"""Model zoo: encoders and heads as Flax Linen modules, and the MAE pieces."""

from ssljax.config import ConfigError, require_choice
from ssljax.models.mae import MAEDecoder, MaskedAutoencoder, random_masking
from ssljax.models.resnet import CONV_INITS, RESNET_SPECS, DINOHead, MLPHead, ProjectionHead, ResNet
from ssljax.models.vit import QKV_INITS, VIT_SPECS, ViT, patchify, sincos_pos_embed_2d, unpatchify

__all__ = [
  "RESNET_SPECS",
  "VIT_SPECS",
  "DINOHead",
  "MAEDecoder",
  "MLPHead",
  "MaskedAutoencoder",
  "ProjectionHead",
  "ResNet",
  "ViT",
  "build_encoder",
  "teacher_train_mode",
  "patchify",
  "random_masking",
  "sincos_pos_embed_2d",
  "unpatchify",
]


def build_encoder(model_config, image_size: int, dtype):
  """The encoder named by `config.model` for square images of `image_size`.

  resnet: depth, width, small_stem, conv_init, zero_init_residual, normalization. vit: variant (Ti/S/B/L/H) with
  optional width/depth/num_heads overrides, patch_size, pool ("cls" | "mean"), drop_path, learned_pos_embed, lora (rank,
  alpha), qkv_init ("fused" | "separate"), cls_token_std, cls_blocks and patch_mean (the features DINO's linear
  evaluation reads).
  """
  name = require_choice(model_config.name, {"resnet", "vit"}, "config.model.name")
  if name == "vit":
    return _build_vit(model_config, image_size, dtype)
  require_choice(model_config.depth, RESNET_SPECS, "config.model.depth")
  conv_init = require_choice(model_config.get("conv_init", "he_fan_out"), CONV_INITS, "config.model.conv_init")
  encoder = ResNet(
    model_config.depth,
    model_config.width,
    model_config.small_stem,
    dtype,
    conv_init=conv_init,
    zero_init_residual=model_config.get("zero_init_residual", True),
    normalization=require_choice(
      model_config.get("normalization", "batch"), ("batch", "layer"), "config.model.normalization"
    ),
  )
  if image_size < encoder.downsampling:
    raise ConfigError(
      f"config.dataset.image_size: {image_size} px is smaller than the ResNet's total stride {encoder.downsampling}"
      f" (small_stem={model_config.small_stem}); use larger images or config.model.small_stem=True"
    )
  return encoder


def _build_vit(model_config, image_size: int, dtype) -> ViT:
  width, depth, num_heads = VIT_SPECS[require_choice(model_config.variant, VIT_SPECS, "config.model.variant")]
  width = model_config.get("width") or width
  depth = model_config.get("depth") or depth
  num_heads = model_config.get("num_heads") or num_heads
  patch_size = model_config.patch_size
  if image_size % patch_size:
    raise ConfigError(
      f"config.dataset.image_size: {image_size} px is not divisible by config.model.patch_size {patch_size}"
    )
  if width % num_heads or width % 4:
    raise ConfigError(f"config.model.width: {width} must be divisible by 4 and by num_heads {num_heads}")
  pool = require_choice(model_config.get("pool", "cls"), {"cls", "mean"}, "config.model.pool")
  cls_blocks, patch_mean = model_config.get("cls_blocks", 1), model_config.get("patch_mean", False)
  if not 1 <= cls_blocks <= depth:
    raise ConfigError(f"config.model.cls_blocks: {cls_blocks} is not between 1 and the depth {depth}")
  if pool != "cls" and (cls_blocks > 1 or patch_mean):
    raise ConfigError("config.model.cls_blocks / patch_mean: need pool='cls'")
  return ViT(
    patch_size,
    width,
    depth,
    num_heads,
    pool=pool,
    drop_path=model_config.get("drop_path", 0.0),
    learned_pos_embed=model_config.get("learned_pos_embed", False),
    lora=(lora.rank, lora.alpha) if (lora := model_config.get("lora")) else None,
    qkv_init=require_choice(model_config.get("qkv_init", "fused"), QKV_INITS, "config.model.qkv_init"),
    cls_token_std=model_config.get("cls_token_std", 0.02),
    cls_blocks=cls_blocks,
    patch_mean=patch_mean,
    dtype=dtype,
  )


def teacher_train_mode(encoder) -> bool:
  """The `train` flag a teacher runs its encoder with: train-mode BatchNorm (its own batch statistics, as the
  references' key / target encoders) for ResNets; for a ViT, which has no BatchNorm, inference mode (no
  stochastic depth in the teacher, as DINO's teacher is built with drop_path 0)."""
  return isinstance(encoder, ResNet)
