"""What the fault tests assert with, beside the stack they break (devstack/faultstack.py,
which `bench/soak.py` also runs): the checker finding nothing, the dispatcher that
records what the pipeline would send, the text of a Messages API content.
"""
from __future__ import annotations

from devstack.faultstack import FaultStack, wait_until

__all__ = ["FaultStack", "RecordingDispatcher", "assert_consistent", "text_of", "wait_until"]


def text_of(content) -> str:
    """A Messages API content: a string, or text blocks (e.g. with cache_control)."""
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content if block.get("type") == "text")


class RecordingDispatcher:
    """Stands in for Celery when the pipeline runs in the test: remembers what it would send."""

    def __init__(self):
        self.turns, self.webhooks = [], []

    def turn(self, job_id) -> None:
        self.turns.append(str(job_id))

    def webhook(self, job_id, countdown=None) -> None:
        self.webhooks.append(str(job_id))


def assert_consistent(stack: FaultStack) -> None:
    """The consistency checker (worker/check.py) finds nothing."""
    from worker.check import check

    report = check(stack.services)
    assert not report.findings, "\n".join(report.lines())
