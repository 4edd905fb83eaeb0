"""hivetui: a terminal dashboard for teams that share NVIDIA GPU servers over SSH."""

__version__ = "0.1.0"
