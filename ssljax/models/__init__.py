"""Model zoo: encoders and heads as Flax Linen modules."""

from ssljax.config import ConfigError, require_choice
from ssljax.models.resnet import RESNET_SPECS, ProjectionHead, ResNet

__all__ = ["RESNET_SPECS", "ProjectionHead", "ResNet", "build_encoder"]


def build_encoder(model_config, image_size: int, dtype):
  """The encoder named by `config.model` (name="resnet", depth, width, small_stem) for images of `image_size`."""
  require_choice(model_config.name, {"resnet"}, "config.model.name")
  require_choice(model_config.depth, RESNET_SPECS, "config.model.depth")
  encoder = ResNet(model_config.depth, model_config.width, model_config.small_stem, dtype)
  if image_size < encoder.downsampling:
    raise ConfigError(
      f"config.dataset.image_size: {image_size} px is smaller than the ResNet's total stride {encoder.downsampling}"
      f" (small_stem={model_config.small_stem}); use larger images or config.model.small_stem=True"
    )
  return encoder
