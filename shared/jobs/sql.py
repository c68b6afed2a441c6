"""Every SQL statement about a job's state, in one place: the ordering rule
(`nothing_before`, `next_queued_sql`), a message's submit, the claim, its lease renewed or
handed back, the end of a job (END_SET, alone or in a stored turn's commit), and the
queries of the open streams, the webhook deliverer, the sweeper, the checker and the
tool-call timeout. shared/jobs/lifecycle.py runs the life's own; a statement used
elsewhere says where. Status names are shared/models.py's JobStatus values."""
from __future__ import annotations

from sqlalchemy import bindparam, text

from shared.models import ACTIVE_STATUSES, Job, Turn


def nothing_before(job: str, earlier: str) -> str:
    """The ordering rule, as SQL: no job of `job`'s conversation submitted before it is
    still waiting, running or waiting for tool results. A job runs only then, so turns
    keep submit order (the claim, the sweeper and the checker all ask it this way;
    `next_queued` asks the same of a whole conversation)."""
    return f"""NOT EXISTS (SELECT 1 FROM jobs {earlier}
                    WHERE {earlier}.conversation_id = {job}.conversation_id
                      AND {earlier}.position < {job}.position
                      AND ({earlier}.status IN {ACTIVE_STATUSES}
                           OR ({earlier}.status = 'requires_action' AND {earlier}.continued_by IS NULL)))"""


def next_queued_sql(conversation: str, besides: str) -> str:
    """The conversation's job to send next, as an SQL expression (NULL for none): its first
    active job if that is queued, unless one of its jobs waits for tool results (those must
    come next: shared/tool_results.py). `besides`: a job not to count (a statement that
    ends a job does not see its own write, so it leaves that job out and asks of it apart)."""
    return f"""CASE WHEN EXISTS (SELECT 1 FROM jobs waiting
                                  WHERE waiting.conversation_id = {conversation}
                                    AND waiting.id IS DISTINCT FROM {besides}
                                    AND waiting.status = 'requires_action' AND waiting.continued_by IS NULL)
                THEN NULL
                ELSE (SELECT CASE WHEN head.status = 'queued' THEN head.id END FROM jobs head
                       WHERE head.conversation_id = {conversation} AND head.id IS DISTINCT FROM {besides}
                         AND head.status IN {ACTIVE_STATUSES}
                       ORDER BY head.position LIMIT 1)
           END"""


NEXT = text(f"SELECT {next_queued_sql('CAST(:conversation_id AS uuid)', 'NULL')}")


# The columns a new job's INSERT gives (shared/jobs/lifecycle.new_job's values); the rest
# are the table's defaults.
NEW_JOB_COLUMNS = ("id", "user_id", "conversation_id", "status", "request", "idempotency_key", "callback_url",
                   "reply", "error")

# A message's submit (shared/jobs/lifecycle.submit), in two statements; the ORM took seven
# round trips and a flush for the same (README, Benchmarks). The user's row first (NO KEY
# UPDATE: this user's submits one at a time, without blocking the foreign-key checks of a
# finishing turn's usage row), then the conversation, as the ORM locked them; the
# uncorrelated EXISTS runs before the conversation row is read.
SUBMIT_LOCK = text("""
    WITH owner AS (SELECT id FROM users WHERE id = :user_id FOR NO KEY UPDATE)
    SELECT user_id FROM conversations
     WHERE conversation_id = :conversation_id AND EXISTS (SELECT 1 FROM owner)
       FOR UPDATE OF conversations
""")

# A separate statement, so its snapshot is taken with both rows locked: the in-flight count
# sees every earlier submit of the user, and `busy` every job a finishing turn ended (so
# exactly one of them dispatches the new job). The job is inserted only if every check
# passes; the caller reads which one failed. The values are new_job's (NEW_JOB_COLUMNS).
SUBMIT = text(f"""
    WITH facts AS (
        SELECT (SELECT count(*) FROM jobs WHERE user_id = :user_id AND status IN {ACTIVE_STATUSES}) AS in_flight,
               (SELECT id FROM jobs WHERE conversation_id = :conversation_id AND status = 'requires_action'
                   AND continued_by IS NULL LIMIT 1) AS waiting,
               (SELECT id FROM jobs WHERE conversation_id = :conversation_id AND status IN {ACTIVE_STATUSES}
                 LIMIT 1) AS busy
    ), job AS (
        INSERT INTO jobs ({", ".join(NEW_JOB_COLUMNS)})
        SELECT {", ".join(":" + column for column in NEW_JOB_COLUMNS)}
          FROM facts
         WHERE :owned AND in_flight < :cap AND (waiting IS NULL OR NOT :reject_waiting)
           AND (busy IS NULL OR NOT :reject)
        RETURNING *
    )
    SELECT facts.in_flight, facts.waiting, facts.busy, job.* FROM facts LEFT JOIN job ON true
""").bindparams(*(bindparam(name, type_=Job.__table__.c[name].type) for name in ("request", "reply", "error")))


# How a job ends, as SQL: its final status and outcome, no lease, and its webhook due now if
# it has a callback. `end_job` runs it; a stored turn's commit statement runs it as one of
# its CTEs (TURN_WRITE, below), so both end a job the same way.
END_SET = """status = :status, finished_at = now(), lease_expires_at = NULL,
             reply = :reply, error = :error, required_action = :required_action,
             webhook_status = CASE WHEN callback_url IS NULL THEN webhook_status ELSE 'pending' END,
             webhook_next_at = CASE WHEN callback_url IS NULL THEN webhook_next_at ELSE now() END"""
END_BINDS = tuple(bindparam(name, type_=Job.__table__.c[name].type) for name in ("reply", "error", "required_action"))
END = text(f"UPDATE jobs SET {END_SET} WHERE id = :job_id").bindparams(*END_BINDS)


# A job runs when it is queued (or its holder's lease ran out) and nothing before it
# in its conversation is unfinished (`nothing_before`, above). The claim returns the
# conversation as it is now too, so a turn reads it without a round trip of its own
# (its columns as they are; the job's under claimed_*; none if it was just deleted).
CLAIM = text(f"""
    WITH claimed AS (
        UPDATE jobs SET status = 'running', attempts = attempts + 1, worker = :worker,
               takeovers = takeovers + (CASE WHEN status = 'running' THEN 1 ELSE 0 END),
               started_at = coalesce(started_at, now()),
               lease_expires_at = now() + make_interval(secs => :lease)
         WHERE id = :id
           AND (status = 'queued'
                OR (status = 'running' AND lease_expires_at < now() AND takeovers + 1 < :max_attempts))
           AND {nothing_before("jobs", "earlier")}
     RETURNING id, user_id, conversation_id, request, attempts, created_at)
    SELECT claimed.id AS claimed_id, claimed.user_id AS claimed_user_id,
           claimed.conversation_id AS claimed_conversation_id, claimed.request AS claimed_request,
           claimed.attempts AS claimed_attempts, claimed.created_at AS claimed_created_at, conversations.*
      FROM claimed LEFT JOIN conversations ON conversations.conversation_id = claimed.conversation_id
""")

# Leases extended, one or every one a worker process holds (worker/lease.py); those not
# returned are no longer held by that claim.
EXTEND = text("""
    UPDATE jobs SET lease_expires_at = now() + make_interval(secs => :lease)
      FROM unnest(CAST(:ids AS uuid[]), CAST(:attempts AS integer[])) AS held (id, attempt)
     WHERE jobs.id = held.id AND jobs.status = 'running' AND jobs.attempts = held.attempt
 RETURNING jobs.id
""")

# Seconds left on a running job's lease, for a delivery that found it held elsewhere.
LEASE_LEFT = text("""
    SELECT status, extract(epoch FROM lease_expires_at - now()) AS remaining FROM jobs WHERE id = :id
""")

# A handed-back job keeps the time it was handed back in lease_expires_at: its
# task retries it with backoff, and the sweeper leaves it to those retries (see
# worker/retry.py) instead of re-sending it, and calling the model, at every sweep.
RELEASE = text("""
    UPDATE jobs SET status = 'queued', lease_expires_at = now()
     WHERE id = :id AND status = 'running' AND attempts = :attempt
""")


# The user's tokens today (UTC), kept apart from conversations so deleting one keeps its usage.
# Also a CTE of the turn commit (TURN_WRITE, below), with :turns 1.
ADD_USAGE_SQL = """
    INSERT INTO usage_daily AS u (user_id, day, turns, input_tokens, output_tokens,
                                  cache_creation_input_tokens, cache_read_input_tokens, cost_usd)
    VALUES (:user_id, (now() AT TIME ZONE 'utc')::date, :turns, :input_tokens, :output_tokens,
            :cache_creation_input_tokens, :cache_read_input_tokens, :cost_usd)
    ON CONFLICT (user_id, day) DO UPDATE SET
        cost_usd = u.cost_usd + excluded.cost_usd,
        turns = u.turns + excluded.turns, input_tokens = u.input_tokens + excluded.input_tokens,
        output_tokens = u.output_tokens + excluded.output_tokens,
        cache_creation_input_tokens = u.cache_creation_input_tokens + excluded.cache_creation_input_tokens,
        cache_read_input_tokens = u.cache_read_input_tokens + excluded.cache_read_input_tokens
"""
ADD_USAGE = text(ADD_USAGE_SQL)


# Conversation first, then the job, as every end of a job locks them (`end_job`):
# the uncorrelated EXISTS runs before the job row is read and locked. Nothing is locked
# if the job is no longer this attempt's (`held_job`'s rule); a lock that waited re-checks
# the job's newest version.
TURN_LOCK = text("""
    WITH conversation AS (
        SELECT conversation_id FROM conversations WHERE conversation_id = :conversation_id FOR UPDATE)
    SELECT id FROM jobs
     WHERE id = :job_id AND status = 'running' AND attempts = :attempt
       AND EXISTS (SELECT 1 FROM conversation)
       FOR UPDATE OF jobs
""")

# A separate statement so that its snapshot is taken with the conversation locked: a submit
# committed before the lock is seen by the next-job query, a later one waits (api/service.py).
# The CTEs' own writes are not visible to the statement, so the next job is asked of the
# conversation's other jobs with `next_queued_sql` (none if this one now waits
# for tool results). The job's end is END_SET, as every end of a job is.
TURN_WRITE = text(f"""
    WITH turn AS (
        INSERT INTO turns (conversation_id, seq, job_id, log_key, user_tokens, assistant_tokens, input_tokens,
                           output_tokens, cache_creation_input_tokens, cache_read_input_tokens, cost_usd,
                           window_start, entry)
        VALUES (:conversation_id, :seq, :job_id, :log_key, :user_tokens, :assistant_tokens, :input_tokens,
                :output_tokens, :cache_creation_input_tokens, :cache_read_input_tokens, :cost_usd,
                :window_start, :entry)
    ), counters AS (
        UPDATE conversations
           SET turn_count = :seq, message_count = message_count + 2,
               input_tokens = input_tokens + :input_tokens, output_tokens = output_tokens + :output_tokens,
               cache_creation_input_tokens = cache_creation_input_tokens + :cache_creation_input_tokens,
               cache_read_input_tokens = cache_read_input_tokens + :cache_read_input_tokens,
               cost_usd = cost_usd + :cost_usd, updated_at = now()
         WHERE conversation_id = :conversation_id
    ), usage AS ({ADD_USAGE_SQL}
    ), ended AS (
        UPDATE jobs SET {END_SET} WHERE id = :job_id
        RETURNING *
    )
    SELECT ended.*,
           CASE WHEN ended.status = 'requires_action' THEN NULL
                ELSE {next_queued_sql("ended.conversation_id", "ended.id")} END AS next_job
      FROM ended
""").bindparams(bindparam("entry", type_=Turn.__table__.c.entry.type), *END_BINDS)


# The open streams' check (api/stream.py): which of the jobs held open have ended. One array
# parameter, not a thousand: rendering an IN list of that size costs more CPU than the
# query, and it runs every ping interval in a process serving requests.
STATUSES = text("SELECT id, status FROM jobs WHERE id = ANY(CAST(:ids AS uuid[]))")


# The sweeper's (worker/sweeper.py).
# Head-of-conversation jobs still queued after the grace period (since they were
# submitted, or since their task's longest retry delay after they were handed
# back: see RELEASE above and worker/retry.py), and running jobs whose lease expired. Running
# jobs whose workers died MAX_JOB_ATTEMPTS times are failed instead; a queued one
# is always re-sent (its claim does not spend a takeover).
ORPHANS = text(f"""
    SELECT id, status, takeovers FROM jobs j
     WHERE ((status = 'queued'
             AND coalesce(lease_expires_at + make_interval(secs => :retry_wait), created_at)
                 < now() - make_interval(secs => :grace)
             AND {nothing_before("j", "e")})
        OR (status = 'running' AND lease_expires_at < now()))
     ORDER BY position LIMIT 500
""")

# Webhook deliveries whose task was lost (or whose deliverer died holding them).
DUE_WEBHOOKS = text("""
    SELECT id FROM jobs WHERE webhook_status = 'pending'
       AND webhook_next_at < now() - make_interval(secs => :grace)
     ORDER BY webhook_next_at LIMIT 500
""")


# The webhook deliverer's (worker/webhooks.py). A delivery is held for the timeout plus a
# margin; if its deliverer dies the hold runs out and the sweeper sends it again.
WEBHOOK_CLAIM = text("""
    UPDATE jobs SET webhook_next_at = now() + make_interval(secs => :hold)
     WHERE id = :id AND webhook_status = 'pending' AND webhook_next_at <= now()
 RETURNING id
""")

WEBHOOK_RECORD = text("""
    UPDATE jobs SET webhook_status = :status,
           webhook_attempts = webhook_attempts || CAST(:attempt AS jsonb),
           webhook_next_at = now() + make_interval(secs => CAST(:delay AS double precision))
     WHERE id = :id
""")


# The checker's (worker/check.py).
STUCK = text(f"""
    SELECT j.id, j.status, j.attempts,
           extract(epoch FROM now() - coalesce(j.lease_expires_at, j.started_at, j.created_at)) AS overdue
      FROM jobs j
     WHERE (j.status = 'running'
            AND coalesce(j.lease_expires_at, j.started_at, j.created_at) < now() - make_interval(secs => :grace))
        OR (j.status = 'queued'
            AND {nothing_before("j", "e")}
            AND greatest(j.created_at, j.lease_expires_at + make_interval(secs => :retry_wait),
                         (SELECT max(e.finished_at) FROM jobs e WHERE e.conversation_id = j.conversation_id
                             AND e.position < j.position))
                < now() - make_interval(secs => :queued_grace + :grace))
     ORDER BY j.position
""")

SUCCEEDED_WITHOUT_TURN = text("""
    SELECT j.id FROM jobs j
     WHERE j.status IN ('succeeded', 'requires_action') AND NOT EXISTS (SELECT 1 FROM turns t WHERE t.job_id = j.id)
     ORDER BY j.position
""")


# The tool-call timeout's (worker/tool_timeouts.py).
OVERDUE_CALLS = text("""
    SELECT id FROM jobs
     WHERE status = 'requires_action' AND continued_by IS NULL
       AND finished_at < now() - make_interval(secs => :timeout)
     ORDER BY finished_at LIMIT 100
""")


# Messages queued behind a job before it called tools (they were submitted while it ran)
# move behind its continuation (shared/tool_results.py): the results must come right after the calls.
MOVE_BEHIND = text("""
    UPDATE jobs SET position = DEFAULT
     WHERE id = :id AND status = 'queued'
""")
