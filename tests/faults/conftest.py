"""Fault tests run against their own stack (devstack/faultstack.py), so stopping a
service here never disturbs the other tests' session stack."""
from __future__ import annotations

import pytest

from shared.logs import clear_context
from tests.faults.stack import FaultStack, RecordingDispatcher
from worker.pipeline import Runtime


@pytest.fixture(scope="package")  # torn down (workers and all) before the next package's tests
def faults(tmp_path_factory):
    stack = FaultStack(tmp_path_factory.mktemp("faults"))
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture()
def fault_stack(faults):
    """The fault stack; after the test every service is back. Workers a test starts
    stay up for the next one (each start costs seconds); a test that needs none, or
    only its own, stops them first."""
    yield faults
    faults.restore()


@pytest.fixture()
def no_workers(fault_stack):
    """No worker runs, so nothing but the test touches its jobs."""
    fault_stack.stop_workers()
    return fault_stack


@pytest.fixture()
def api(faults):
    return faults.app.test_client()


@pytest.fixture()
def user(faults):
    return faults.new_user()


@pytest.fixture()
def runtime():
    """What a worker lends the pipeline, for running it in the test: sends are recorded."""
    return Runtime(RecordingDispatcher())


@pytest.fixture(autouse=True)
def _log_context_cleared():
    """The pipeline run here binds job and user ids to the log context, as in a worker's
    task; they must not follow into other tests."""
    yield
    clear_context()
