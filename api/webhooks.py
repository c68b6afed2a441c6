"""/v1/webhook-secret: the key that signs the caller's webhook deliveries."""
from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag

from api import schemas
from api.context import require_user, services
from shared.webhooks import ensure_secret

blueprint = APIBlueprint("webhooks", __name__, url_prefix="/v1/webhook-secret", abp_tags=[Tag(name="webhooks")],
                         abp_security=[{"bearer": []}],
                         abp_responses={401: schemas.ErrorEnvelope, 503: schemas.ErrorEnvelope})


@blueprint.get("", responses={200: schemas.WebhookSecret})
def read():
    """Your webhook signing secret (made on first use). Verify a delivery by computing
    HMAC-SHA256 with it over `{Parley-Timestamp}.{raw body}` and comparing, in constant
    time, with the hex after `v1=` in `Parley-Signature`."""
    return _secret(rotate=False)


@blueprint.post("/rotate", responses={200: schemas.WebhookSecret})
def rotate():
    """Replace your webhook secret; deliveries from now on are signed with the new one."""
    return _secret(rotate=True)


def _secret(rotate: bool) -> dict:
    user = require_user()
    with services().sessions.begin() as session:
        secret = ensure_secret(session, user.id, rotate=rotate)
    return schemas.WebhookSecret(secret=secret).model_dump()
