"""The sweeper: re-sends jobs whose task was lost (broker restart, failed send) or
whose worker died (lease ran out). Claims are atomic, so a spare send is harmless.
Likewise a fork's log copy not done a task time limit after the fork (worker/forks.py).
"""
from __future__ import annotations

import logging
import threading

from sqlalchemy import func, select

from shared.bootstrap import Services
from shared.jobs import announce_end, end_job
from shared.jobs.sql import DUE_WEBHOOKS, ORPHANS
from shared.models import Job
from shared.tasks import Dispatcher
from worker.forks import STALLED_FORKS
from worker.retry import LONGEST_RETRY_SECONDS
from worker.tool_timeouts import answer_overdue

log = logging.getLogger("parley.sweeper")

def sweep_once(services: Services, dispatcher: Dispatcher) -> int:
    """Re-send or give up on orphaned jobs and webhooks; returns how many were re-sent."""
    max_attempts, sent = services.settings.max_job_attempts, 0
    grace = {"grace": services.settings.queued_grace_seconds}
    with services.engine.begin() as connection:
        rows = connection.execute(ORPHANS, {**grace, "retry_wait": LONGEST_RETRY_SECONDS}).all()
        webhooks = connection.execute(DUE_WEBHOOKS, grace).scalars().all()
        forks = connection.execute(STALLED_FORKS, {"grace": services.settings.task_soft_time_limit_seconds}
                                   ).scalars().all()
    for row in rows:
        if row.status == "running" and row.takeovers + 1 >= max_attempts:  # its workers died that often
            _give_up(services, dispatcher, row.id)
            continue
        dispatcher.turn(row.id)
        sent += 1
    for job_id in webhooks:
        dispatcher.webhook(job_id)
    for conversation_id in forks:
        dispatcher.fork_log(conversation_id)
    sent += answer_overdue(services, dispatcher)
    if sent or webhooks or forks:
        log.info("re-sent %s orphaned jobs, %s webhooks and %s fork copies", sent, len(webhooks), len(forks))
    return sent + len(webhooks) + len(forks)


def _give_up(services: Services, dispatcher: Dispatcher, job_id) -> None:
    with services.sessions.begin() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.status != "running" or job.lease_expires_at is None:
            return
        if session.scalar(select(Job.lease_expires_at >= func.now()).where(Job.id == job_id)):
            return  # renewed meanwhile
        runs = job.takeovers + 1
        next_job = end_job(session, job, "failed", error={
            "type": "internal", "message": f"The reply could not be completed after {runs} attempts."})
    log.warning("job %s failed: its worker stopped %s times", job_id, runs)
    announce_end(services.events, dispatcher, job, next_job)


class Sweeper:
    """Runs `sweep_once` every interval in one worker at a time (a Redis lock elects it)."""

    def __init__(self, services: Services, dispatcher: Dispatcher):
        self.services, self.dispatcher = services, dispatcher
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        interval = self.services.settings.sweep_interval_seconds
        while not self._stop.wait(interval):
            try:
                if self.services.redis.set("parley:sweeper", "1", nx=True, ex=max(1, int(interval))):
                    sweep_once(self.services, self.dispatcher)
            except Exception as error:  # a service is down; try again next round
                log.warning("sweep skipped: %s", error)
