"""Job records as clients see them."""
from __future__ import annotations

from datetime import datetime

from shared.models import Job


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def job_to_dict(job: Job) -> dict:
    return {
        "id": str(job.id),
        "conversation_id": str(job.conversation_id),
        "status": job.status,
        "request": {"content": job.request.get("content", "")},
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "attempts": job.attempts,
        "reply": job.reply,
        "error": job.error,
    }
