"""What the fault tests assert with, beside the stack they break (devstack/faultstack.py,
which `bench/soak.py` also runs): the checker finding nothing, the dispatcher that
records what the pipeline would send, the text of a Messages API content.
"""
from __future__ import annotations

from devstack.faultstack import FaultStack, wait_until
from tests.unit.fakes import RecordingDispatcher

__all__ = ["FaultStack", "RecordingDispatcher", "assert_consistent", "text_of", "wait_until"]


def text_of(content) -> str:
    """A Messages API content: a string, or text blocks (e.g. with cache_control)."""
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content if block.get("type") == "text")


def assert_consistent(stack: FaultStack) -> None:
    """The consistency checker (worker/check.py) finds nothing."""
    from worker.check import check

    report = check(stack.services)
    assert not report.findings, "\n".join(report.lines())
