"""openheavy: an open Heavy mode for any language model."""

__version__ = "0.1.0"
