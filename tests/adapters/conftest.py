"""Fixtures shared by the adapter tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import respx


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    """A respx router that fails any request it has no route for."""
    with respx.mock(assert_all_mocked=True) as router:
        yield router


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Torch on one thread: on two shared cores, several BLAS threads per process thrash."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
