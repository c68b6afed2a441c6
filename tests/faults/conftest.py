"""Fault tests run against their own stack (tests/faults/stack.py), so stopping a
service here never disturbs the other tests' session stack."""
from __future__ import annotations

import pytest

from tests.faults.stack import FaultStack


@pytest.fixture(scope="session")
def faults(tmp_path_factory):
    stack = FaultStack(tmp_path_factory.mktemp("faults"))
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture()
def fault_stack(faults):
    """The fault stack with no workers running; after the test every service is
    back and the workers it started are stopped."""
    yield faults
    faults.restore()
    faults.stop_workers()


@pytest.fixture()
def api(faults):
    return faults.app.test_client()


@pytest.fixture()
def user(faults):
    return faults.new_user()
