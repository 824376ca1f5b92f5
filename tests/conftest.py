"""Every test process sees 8 CPU devices (set before JAX starts), so sharded and 1-device results can be compared;
a persistent compilation cache keeps repeated runs of the suite fast."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def mesh8():
  assert jax.device_count() == 8, "tests expect XLA_FLAGS=--xla_force_host_platform_device_count=8"
  return jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
