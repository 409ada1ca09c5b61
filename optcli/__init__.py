"""optcli: train PyTorch models from YAML configs and compare optimizers and learning-rate schedules."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("optcli")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
