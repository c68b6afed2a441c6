"""Tool calls nobody answers: past TOOL_RESULTS_TIMEOUT_SECONDS the sweeper answers them
with an error result, so the conversation goes on instead of waiting for ever."""
from __future__ import annotations

import logging


from shared.bootstrap import Services
from shared.jobs.sql import OVERDUE_CALLS
from shared.models import Job
from shared.tasks import Dispatcher
from shared.tool_results import ToolResultsRefused, answer_calls, error_results

log = logging.getLogger("parley.sweeper")

def timeout_message(seconds: float) -> str:
    return f"No result: the caller did not answer within {seconds:g} seconds (TOOL_RESULTS_TIMEOUT_SECONDS)."


def answer_overdue(services: Services, dispatcher: Dispatcher) -> int:
    """Answer every call waiting past the timeout; returns how many continuations were sent."""
    timeout = services.settings.tool_results_timeout_seconds
    with services.engine.begin() as connection:
        overdue = connection.execute(OVERDUE_CALLS, {"timeout": timeout}).scalars().all()
    sent = 0
    for job_id in overdue:
        with services.sessions() as session:
            job = session.get(Job, job_id)
            if job is None:
                continue
            try:
                continuation, send_now = answer_calls(session, services.events, job,
                                                      error_results(job, timeout_message(timeout)))
            except ToolResultsRefused:  # answered meanwhile
                continue
        log.info("job %s: tool calls unanswered after %ss, answered with an error", job_id, timeout)
        if send_now:
            dispatcher.turn(continuation.id)
            sent += 1
    return sent
