"""dnalm: DNA language models from genome download to genome-wide scores."""
__version__ = "0.1.0"
