"""Fixtures shared by the integration tests beyond the stack (tests/conftest.py)."""
from __future__ import annotations

import pytest

from tests.integration.receivers import RawReceiver


@pytest.fixture()
def raw_receiver():
    """Make hostile webhook receivers on real sockets; all closed after the test."""
    made: list[RawReceiver] = []

    def make(*args, **kwargs) -> RawReceiver:
        made.append(RawReceiver(*args, **kwargs))
        return made[-1]

    yield make
    for each in made:
        each.close()
