"""dnalm: DNA language models from genome download to genome-wide scores."""

from dnalm import _autoclasses

__version__ = "0.1.0"

# transformers' Auto classes learn dnalm's model types when (and only if) they are imported
_autoclasses.install()
