"""Moved to ``derive.ops`` (the op table); this name stays for code written against it."""

from .ops import FUNCTIONS, relu, sigmoid, softplus  # noqa: F401
