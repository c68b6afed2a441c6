"""Lists by page (conversations, forks, files): newest first, with a keyset cursor on
(created_at, id) that stays valid as rows are added, and the page size checked once."""
from __future__ import annotations

import base64
import uuid
from datetime import datetime

from sqlalchemy import tuple_
from sqlalchemy.orm import Session
from shared.refusals import Invalid



def check_limit(limit: int, max_page_size: int) -> None:
    if limit > max_page_size:
        raise Invalid("invalid_request", f"limit: at most {max_page_size}.")


def newest_first(session: Session, query, created, row_id, limit: int, cursor: str | None) -> tuple[list, str | None]:
    """Up to `limit` rows of `query` ordered by (created, row_id) descending, after
    `cursor`; and the cursor of the next page, None on the last."""
    if cursor:
        query = query.where(tuple_(created, row_id) < _decode(cursor))
    rows = session.scalars(query.order_by(created.desc(), row_id.desc()).limit(limit + 1)).all()
    if len(rows) <= limit:
        return list(rows), None
    last = rows[limit - 1]
    return list(rows[:limit]), _encode(getattr(last, created.key), getattr(last, row_id.key))


def _encode(created: datetime, row_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created.isoformat()}|{row_id}".encode()).decode()


def _decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(created), uuid.UUID(row_id)
    except (ValueError, UnicodeError):
        raise Invalid("invalid_request", "cursor: not a cursor this API returned") from None
