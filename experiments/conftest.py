"""The papers' tests share the fixtures of tests/conftest.py, and `one_thread`."""

import pytest
import torch

from tests.conftest import needs_mnist, tiny_mnist  # noqa: F401
from tests.omniglot_fake import write_fake_mirror


@pytest.fixture
def one_thread():
    """Two torch threads on two busy cores run small nets several times slower: a test
    module asks for one (`pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def fake_omniglot(tmp_path_factory):
    """(mirror, data root): a fake Omniglot mirror in the real layout, unpacked on first use."""
    base = tmp_path_factory.mktemp("omniglot")
    return write_fake_mirror(base / "mirror"), base / "data"
