"""Which of the configured models exist today, asked of the provider's own model list.

At start-up (`require_current_models`) MODEL or BEDROCK_MODEL_ID and every
ALLOWED_MODELS entry must be known to the provider and not retired, or the process
stops with one line naming the setting. A deprecated model starts with a warning
giving its retirement date, and `GET /v1/models` shows it. A list that cannot be
fetched (network, permissions) is a warning, never a refusal: the provider may be
briefly unreachable while Parley starts.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Iterable, Literal

from shared.config import ConfigError, Settings
from shared.thinking import ThinkingSupport, bedrock_support, support_from_capabilities

log = logging.getLogger("parley.models")

Lifecycle = Literal["active", "deprecated", "retired", "unknown"]
TIMEOUT_SECONDS = 10.0
# Bedrock's cross-region inference profiles prefix the foundation model's id.
GEO_PREFIXES = ("global.", "us.", "eu.", "apac.", "au.", "jp.", "ca.", "us-gov.")


@dataclass(frozen=True)
class ModelStatus:
    id: str
    lifecycle: Lifecycle
    retires_at: str | None = None  # YYYY-MM-DD, when the provider has scheduled it
    display_name: str | None = None
    thinking: ThinkingSupport | None = None  # None when the provider did not say

    def describe(self) -> dict:
        return {"id": self.id, "lifecycle": self.lifecycle, "retires_at": self.retires_at,
                "display_name": self.display_name, "thinking": self.thinking.describe() if self.thinking else None}


class CatalogUnavailable(Exception):
    """The provider's model list could not be read (network, permissions, credentials)."""


def configured_models(settings: Settings) -> dict[str, str]:
    """Each model Parley may call, with the setting that names it."""
    default = "BEDROCK_MODEL_ID" if settings.llm_provider == "bedrock" else "MODEL"
    return {model: (default if model == settings.default_model else "ALLOWED_MODELS")
            for model in sorted(settings.model_choices)}


def fetch_statuses(settings: Settings, model_ids: Iterable[str]) -> tuple[dict[str, ModelStatus], list[str]]:
    """The lifecycle of each id, from the Models API or Bedrock's ListFoundationModels,
    and the provider's active models, newest first."""
    if settings.llm_provider == "bedrock":
        return _bedrock_statuses(settings, list(model_ids))
    return _anthropic_statuses(settings, list(model_ids))


def _day(value) -> str | None:
    return value.date().isoformat() if value is not None else None


def _anthropic_statuses(settings: Settings, model_ids: list[str]) -> tuple[dict[str, ModelStatus], list[str]]:
    import anthropic

    if not (settings.anthropic_api_key or settings.anthropic_base_url):
        raise CatalogUnavailable("no ANTHROPIC_API_KEY")
    client = anthropic.Anthropic(api_key=settings.anthropic_api_key or "offline",
                                 base_url=settings.anthropic_base_url, timeout=TIMEOUT_SECONDS, max_retries=1)
    try:
        listed = {info.id: info for info in client.models.list(lifecycle=["active", "deprecated", "retired"],
                                                               limit=1000)}
        statuses = {}
        for model_id in model_ids:
            info = listed.get(model_id)
            if info is None:  # an alias (claude-x-y for claude-x-y-20250101) is not listed; ask for it
                try:
                    info = client.models.retrieve(model_id)
                except anthropic.NotFoundError:
                    statuses[model_id] = ModelStatus(model_id, "unknown")
                    continue
            statuses[model_id] = ModelStatus(model_id, info.lifecycle, _day(info.retires_at), info.display_name,
                                             support_from_capabilities(info.capabilities, info.max_tokens))
        return statuses, [model_id for model_id, info in listed.items() if info.lifecycle == "active"]
    except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as error:
        raise ConfigError(f"ANTHROPIC_API_KEY: the Models API refused it ({error.status_code})") from None
    except anthropic.APIError as error:
        raise CatalogUnavailable(str(error)) from None
    finally:
        client.close()


def foundation_id(bedrock_id: str) -> str:
    """The foundation model behind an inference profile id (global.anthropic.… → anthropic.…)."""
    return next((bedrock_id[len(p):] for p in GEO_PREFIXES if bedrock_id.startswith(p)), bedrock_id)


def _bedrock_statuses(settings: Settings, model_ids: list[str]) -> tuple[dict[str, ModelStatus], list[str]]:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    session = boto3.session.Session()
    if session.get_credentials() is None:
        raise CatalogUnavailable("no AWS credentials")
    client = session.client("bedrock", region_name=settings.aws_region,
                            endpoint_url=settings.bedrock_endpoint_url or None,
                            config=Config(connect_timeout=TIMEOUT_SECONDS, read_timeout=TIMEOUT_SECONDS,
                                          retries={"total_max_attempts": 2, "mode": "standard"}))
    try:
        summaries = client.list_foundation_models(byProvider="Anthropic")["modelSummaries"]
    except (BotoCoreError, ClientError) as error:  # e.g. a role allowed to invoke models but not to list them
        raise CatalogUnavailable(str(error)) from None
    listed = {summary["modelId"]: summary for summary in summaries}
    statuses = {}
    for model_id in model_ids:
        summary = listed.get(foundation_id(model_id))
        if summary is None:  # Bedrock lists no retired model: unknown and retired look the same
            statuses[model_id] = ModelStatus(model_id, "unknown")
            continue
        lifecycle = summary.get("modelLifecycle") or {}
        stage = "deprecated" if lifecycle.get("status") == "LEGACY" else "active"
        statuses[model_id] = ModelStatus(model_id, stage, _day(lifecycle.get("endOfLifeTime")),
                                         summary.get("modelName"), bedrock_support(model_id))
    active = [s["modelId"] for s in summaries if (s.get("modelLifecycle") or {}).get("status") == "ACTIVE"]
    return statuses, active


def check_models(settings: Settings) -> dict[str, ModelStatus]:
    """Refuse (ConfigError) a configured model that is retired or unknown; warn about deprecated ones."""
    named = configured_models(settings)
    try:
        statuses, current = fetch_statuses(settings, named)
    except CatalogUnavailable as error:
        log.warning("could not check the configured models against the provider's list (%s); "
                    "starting without the check", error)
        return {}
    for model_id, setting in named.items():
        status = statuses[model_id]
        if status.lifecycle in ("retired", "unknown"):
            what = "was retired" if status.lifecycle == "retired" else "is not a model the provider offers"
            hint = f"; current models: {', '.join(current[:4])}" if current else ""
            raise ConfigError(f"{setting}: {model_id} {what} (see README, Models, to move to another){hint}")
        if status.lifecycle == "deprecated":
            log.warning("model %s (%s) is deprecated and retires on %s; move to a current model before then",
                        model_id, setting, status.retires_at or "a date not yet set")
    log.info("models checked against the provider's list: %s",
             ", ".join(f"{model_id} {status.lifecycle}" for model_id, status in statuses.items()))
    return statuses


def require_current_models(settings: Settings) -> dict[str, ModelStatus]:
    """check_models for an entry point: a refusal is one line on stderr and exit status 2."""
    if not settings.check_models:
        return {}
    try:
        return check_models(settings)
    except ConfigError as error:
        sys.stderr.write(f"config error: {error}\n")
        raise SystemExit(2) from None


class ModelCatalog:
    """The configured models' lifecycles for GET /v1/models, read lazily and kept an hour
    (a minute after a failed read), so a request never waits on the provider for long."""

    TTL_SECONDS, RETRY_SECONDS = 3600.0, 60.0

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._statuses: dict[str, ModelStatus] = {}
        self._expires = 0.0

    def describe(self) -> list[dict]:
        statuses = self._current()
        return [(statuses.get(model_id) or ModelStatus(model_id, "unknown")).describe()
                for model_id in sorted(self.settings.model_choices)]

    def thinking(self, model_id: str) -> ThinkingSupport | None:
        """What the model accepts for thinking; None when the provider's list could not be read.
        Bedrock lists no capabilities: its rule needs no list."""
        if self.settings.llm_provider == "bedrock":
            return bedrock_support(model_id)
        status = self._current().get(model_id)
        return status.thinking if status else None

    def _current(self) -> dict[str, ModelStatus]:
        with self._lock:
            if time.monotonic() >= self._expires:
                try:
                    self._statuses = (fetch_statuses(self.settings, self.settings.model_choices)[0]
                                      if self.settings.check_models else {})
                    self._expires = time.monotonic() + self.TTL_SECONDS
                except (CatalogUnavailable, ConfigError) as error:
                    log.warning("model list unavailable: %s", error)
                    self._expires = time.monotonic() + self.RETRY_SECONDS
            return self._statuses
