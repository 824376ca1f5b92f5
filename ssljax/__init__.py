"""ssljax: self-supervised representation learning in JAX/Flax."""

__version__ = "0.1.0"


def __getattr__(name):
  """`ssljax.load_encoder` (imported on first use: `import ssljax` stays light)."""
  if name == "load_encoder":
    from ssljax.pretrained import load_encoder

    return load_encoder
  raise AttributeError(f"module 'ssljax' has no attribute {name!r}")
