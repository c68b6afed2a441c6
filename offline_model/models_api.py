"""The Models API (`GET /v1/models`, `/v1/models/{id}`) and Bedrock's
ListFoundationModels, answered from offline_model/catalog.py."""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from offline_model import catalog


class ModelsApiRoutes:
    """Mixed into the request handler: the model lists, and whether a model may be called."""

    def _models(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        stages = query.get("lifecycle[]") or query.get("lifecycle") or ["active", "deprecated"]
        with self.server.lock:
            data = catalog.listing(dict(self.server.lifecycle), stages)
        after = (query.get("after_id") or [None])[0]
        if after in [m["id"] for m in data]:
            data = data[[m["id"] for m in data].index(after) + 1:]
        limit = int((query.get("limit") or ["20"])[0])
        page = data[:limit]
        self._send_json(200, {"data": page, "has_more": len(data) > limit,
                              "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None})

    def _model(self) -> None:
        model_id = unquote(self.path.split("?", 1)[0].removeprefix("/v1/models/"))
        with self.server.lock:
            info = catalog.model_info(model_id, dict(self.server.lifecycle))
        if info is None:
            self._send_error(404, "not_found_error", f"model: {model_id}")
        else:
            self._send_json(200, info)

    def _foundation_models(self) -> None:
        with self.server.lock:
            summaries = catalog.foundation_models(dict(self.server.lifecycle))
        self._send_json(200, {"modelSummaries": summaries})

    def _unavailable_model(self, model_id: Any) -> str | None:
        """Why the API would refuse a request for this model: unknown, or retired."""
        with self.server.lock:
            stage = catalog.lifecycle(str(model_id), dict(self.server.lifecycle))
        if stage is None:
            return f"model: {model_id}"
        if stage == "retired":
            return f"model: {model_id} has been retired; see https://docs.anthropic.com/en/docs/resources/model-deprecations"
        return None
