"""A job's life, in one home. A job is one message to answer: submitted queued, claimed by
a worker (the job row is the lock), its lease renewed or handed back, ended one way, and the
conversation's next job sent when it ends.

  lifecycle.py  new_job, submit, claim, renew, renew_all, lease_left, release, held_job,
                end_job, commit_turn, next_queued, announce_end: what the API, the pipeline
                and the sweeper call
  sql.py        every SQL statement about a job's state, the ordering rule among them
  record.py     the job as clients see it (job_to_dict, final_event)
"""
from shared.jobs.lifecycle import (Claim, Submitted, announce_end, claim, commit_turn, end_job, held_job,
                                   lease_left, new_job, next_queued, release, renew, renew_all, submit)
from shared.jobs.record import final_event, job_to_dict

__all__ = ["Claim", "Submitted", "announce_end", "claim", "commit_turn", "end_job", "final_event", "held_job",
           "job_to_dict", "lease_left", "new_job", "next_queued", "release", "renew", "renew_all", "submit"]
