"""Bad-input errors of the trainer (config, flags, devices, workdir): main.py turns them into one
line and exit code 2."""


class ConfigurationError(ValueError):
    """Something the user set is impossible; the message names the key or flag."""
