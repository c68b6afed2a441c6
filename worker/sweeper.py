"""The sweeper: re-sends jobs whose task was lost (broker restart, failed send) or
whose worker died (lease ran out). Claims are atomic, so a spare send is harmless.
"""
from __future__ import annotations

import logging
import threading

from sqlalchemy import text

from shared.bootstrap import Services

log = logging.getLogger("parley.sweeper")

# Head-of-conversation jobs still queued after the grace period, and running
# jobs whose lease expired. Running jobs that used every attempt are failed
# instead; a queued one is always re-sent (its claim does not spend a takeover).
_ORPHANS = text("""
    SELECT id, status, attempts FROM jobs j
     WHERE ((status = 'queued' AND created_at < now() - make_interval(secs => :grace)
             AND NOT EXISTS (SELECT 1 FROM jobs e WHERE e.conversation_id = j.conversation_id
                              AND e.position < j.position AND e.status IN ('queued', 'running')))
        OR (status = 'running' AND lease_expires_at < now()))
     ORDER BY position LIMIT 500
""")

_GIVE_UP = text("""
    UPDATE jobs SET status = 'failed', finished_at = now(), lease_expires_at = NULL,
           error = jsonb_build_object('type', 'internal', 'message',
                   'The reply could not be completed after ' || attempts || ' attempts.')
     WHERE id = :id AND status = 'running' AND lease_expires_at < now()
 RETURNING (SELECT id FROM jobs n WHERE n.conversation_id = jobs.conversation_id AND n.status = 'queued'
             ORDER BY n.position LIMIT 1) AS next_id
""")


def sweep_once(services: Services, dispatch) -> int:
    """Re-send or give up on orphaned jobs; returns how many were re-sent."""
    max_attempts, sent = services.settings.max_job_attempts, 0
    with services.engine.begin() as connection:
        rows = connection.execute(_ORPHANS, {"grace": services.settings.queued_grace_seconds}).all()
    for row in rows:
        if row.status == "running" and row.attempts >= max_attempts:
            with services.engine.begin() as connection:
                given_up = connection.execute(_GIVE_UP, {"id": row.id}).first()
            if given_up is not None:
                log.warning("job %s failed after %s attempts", row.id, row.attempts)
                services.notifier.publish_finished(row.id, "failed")
                if given_up.next_id:
                    dispatch(str(given_up.next_id))
            continue
        dispatch(str(row.id))
        sent += 1
    if sent:
        log.info("re-sent %s orphaned jobs", sent)
    return sent


class Sweeper:
    """Runs `sweep_once` every interval in one worker at a time (a Redis lock elects it)."""

    def __init__(self, services: Services, dispatch):
        self.services, self.dispatch = services, dispatch
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
                    sweep_once(self.services, self.dispatch)
            except Exception as error:  # a service is down; try again next round
                log.warning("sweep skipped: %s", error)
