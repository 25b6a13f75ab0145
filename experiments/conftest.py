"""The papers' tests share the fixtures of tests/conftest.py, and `one_thread`."""

import pytest
import torch

from tests.conftest import needs_mnist, tiny_mnist  # noqa: F401


@pytest.fixture
def one_thread():
    """Two torch threads on two busy cores run small nets several times slower: a test
    module asks for one (`pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
