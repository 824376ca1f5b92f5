"""Checks on a config before anything is built, so that mistakes fail in one line that names the key."""


class ConfigError(ValueError):
  """A bad config value or input; `ssljax.train` prints it as one line and exits with status 2."""


def require_choice(value, choices, key: str):
  """Raises ConfigError naming `key` unless `value` is one of `choices`."""
  if value not in choices:
    raise ConfigError(f"{key}: unknown value {value!r}; choose one of {sorted(choices)}")
  return value
