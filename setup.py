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
  package_data={"ssljax": ["assets/*.json"]},  # The embedded default's tokenizer.
  python_requires=">=3.11",
  install_requires=requirements,
  extras_require={
    # nbclient + ipykernel run the colabs headless in the test suite.
    # importlib_resources: tfds imports it when building a dataset without declaring it on Python >= 3.9
    # (tensorflow/datasets#11212); the tests build a small tfds dataset, `prepare` builds real ones.
    "test": [
      "pytest==9.2.0",
      "pytest-xdist==3.8.0",  # The suite in two processes: XLA compiles on one core, so two overlap compiles.
      "ruff==0.17.6",
      "nbclient==0.11.0",
      "nbformat==5.11.1",
      "ipykernel==7.4.0",
      "importlib_resources==7.1.0",
    ],
    # Only to build tfds datasets (images are encoded with TensorFlow); training reads them without TensorFlow.
    "prepare": ["tensorflow-cpu", "importlib_resources==7.1.0"],
    # Workdirs in a GCS bucket (--workdir gs://...): epath writes files with gcsfs (or tensorflow, when installed);
    # orbax reads the bucket's settings with google-cloud-storage. Arrays go through TensorStore's own GCS driver.
    "gcs": ["gcsfs==2026.10.1", "google-cloud-storage==3.17.1"],
  },
)
