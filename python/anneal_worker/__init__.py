"""anneal's Python worker runtime: the protocol every Python step speaks (see protocol.py)."""
from .protocol import Worker, fail, load_spec  # noqa: F401
