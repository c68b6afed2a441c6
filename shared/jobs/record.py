"""The job as clients see it: the record of GET /v1/jobs/{id}, the final event's data and
the webhook's body."""
from __future__ import annotations

from datetime import datetime

from shared.models import Job


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def job_to_dict(job: Job) -> dict:
    body = {
        "id": str(job.id),
        "conversation_id": str(job.conversation_id),
        "status": job.status,
        "request": {"content": job.request.get("content", ""),
                    **({"attachments": job.request["attachments"]} if job.request.get("attachments") else {})},
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "attempts": job.attempts,
        "reply": job.reply,
        "error": job.error,
    }
    if job.required_action:
        body["required_action"] = {**job.required_action,
                                   "continued_by": str(job.continued_by) if job.continued_by else None}
    if job.request.get("continues"):
        body["request"]["continues"] = job.request["continues"]
    if job.request.get("thinking"):  # this message's own thinking setting
        body["request"]["thinking"] = job.request["thinking"]
    if job.callback_url:
        body["webhook"] = {"url": job.callback_url, "status": job.webhook_status or "waiting",
                           "attempts": job.webhook_attempts or []}
    return body


def final_event(job: Job) -> str:
    return f"job.{job.status}"
