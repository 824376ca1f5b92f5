"""ssljax: self-supervised representation learning in JAX/Flax."""

import pathlib

from setuptools import find_packages, setup

requirements = [
  line.strip()
  for line in (pathlib.Path(__file__).parent / "requirements.txt").read_text().splitlines()
  if line.strip() and not line.startswith("#")
]

setup(
  name="ssljax",
  version="0.1.0",
  description="Self-supervised representation learning in JAX/Flax: SimCLR, MAE and more, sharded from day one.",
  packages=find_packages(include=["ssljax", "ssljax.*"]),
  python_requires=">=3.11",
  install_requires=requirements,
  extras_require={
    # nbclient + ipykernel run the colabs headless in the test suite.
    "test": ["pytest==9.2.0", "ruff==0.17.6", "nbclient==0.11.0", "nbformat==5.11.1", "ipykernel==7.4.0"],
    "prepare": ["tensorflow-cpu"],  # Only to build tfds datasets; training reads them without TensorFlow.
  },
)
