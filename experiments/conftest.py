"""The papers' tests share the fixtures of tests/conftest.py."""

from tests.conftest import needs_mnist, tiny_mnist  # noqa: F401
