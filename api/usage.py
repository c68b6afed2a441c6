"""/v1/usage: the caller's model tokens per UTC day (kept when conversations are deleted)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from flask_openapi3 import APIBlueprint, Tag
from sqlalchemy import select

from api import schemas
from api.context import require_user, services
from api.errors import ApiError
from shared.db import reading
from shared.models import USAGE_FIELDS, UsageDaily

blueprint = APIBlueprint("usage", __name__, url_prefix="/v1/usage", abp_tags=[Tag(name="usage")],
                         abp_security=[{"bearer": []}],
                         abp_responses={400: schemas.ErrorEnvelope, 401: schemas.ErrorEnvelope,
                                        503: schemas.ErrorEnvelope})

MAX_DAYS = 366


@blueprint.get("", responses={200: schemas.UsageReport})
def read(query: schemas.UsageQuery):
    """Turns, tokens (input, output, cache writes, cache reads) and estimated cost per day from `from` to `to`."""
    user = require_user()
    last = query.to or datetime.now(timezone.utc).date()
    first = query.from_ or last - timedelta(days=30)
    if first > last or (last - first).days >= MAX_DAYS:
        raise ApiError(400, "invalid_request", f"from/to: `from` must not be after `to`, at most {MAX_DAYS} days.")
    with reading(services().sessions) as session:
        rows = session.scalars(select(UsageDaily).where(UsageDaily.user_id == user.id,
                                                        UsageDaily.day.between(first, last))
                               .order_by(UsageDaily.day)).all()
    days = [{"day": row.day.isoformat(), "turns": row.turns, **{f: getattr(row, f) for f in USAGE_FIELDS},
             "cost_usd": float(row.cost_usd)} for row in rows]
    totals = {"day": "total", "turns": sum(d["turns"] for d in days),
              **{f: sum(d[f] for d in days) for f in USAGE_FIELDS},
              "cost_usd": float(sum((row.cost_usd for row in rows), Decimal(0)))}
    return {"from": first.isoformat(), "to": last.isoformat(), "totals": totals, "days": days}
