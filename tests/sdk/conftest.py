"""Fixtures shared by the sdk tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.sdk.fakes import FakeImagesServer


@pytest.fixture
def server() -> Iterator[FakeImagesServer]:
    srv = FakeImagesServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
