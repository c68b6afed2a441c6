"""The models the offline model says exist, as the Models API and Bedrock's
ListFoundationModels report them, with the lifecycle each is in today.

The table mirrors the pinned `anthropic` SDK's model ids and its deprecation dates
(a model is `retired` once its retirement date has passed). Tests change a model's
lifecycle at run time through `/_control {"lifecycle": {id: stage}}`.
"""
from __future__ import annotations

from datetime import datetime, timezone

# id: (display name, deprecated_at, retires_at); dates are UTC days, None when not scheduled.
MODELS: dict[str, tuple[str, str | None, str | None]] = {
    "claude-sonnet-5-5": ("Claude Sonnet 5.5", None, None),
    "claude-opus-5-5": ("Claude Opus 5.5", None, None),
    "claude-haiku-5-5": ("Claude Haiku 5.5", None, None),
    "claude-fable-5-2": ("Claude Fable 5.2", None, None),
    "claude-mythos-5-2": ("Claude Mythos 5.2", None, None),
    "claude-fable-5-1": ("Claude Fable 5.1", None, None),
    "claude-mythos-5-1": ("Claude Mythos 5.1", None, None),
    "claude-sonnet-5": ("Claude Sonnet 5", None, None),
    "claude-opus-5": ("Claude Opus 5", None, None),
    "claude-fable-5": ("Claude Fable 5", None, None),
    "claude-mythos-5": ("Claude Mythos 5", None, None),
    "claude-opus-4-8": ("Claude Opus 4.8", None, None),
    "claude-opus-4-7": ("Claude Opus 4.7", None, None),
    "claude-opus-4-6": ("Claude Opus 4.6", None, None),
    "claude-sonnet-4-6": ("Claude Sonnet 4.6", None, None),
    "claude-haiku-4-5": ("Claude Haiku 4.5", None, None),
    "claude-haiku-4-5-20251001": ("Claude Haiku 4.5", None, None),
    "claude-opus-4-5": ("Claude Opus 4.5", None, None),
    "claude-opus-4-5-20251101": ("Claude Opus 4.5", None, None),
    "claude-mythos-preview": ("Claude Mythos Preview", "2026-04-01", "2026-06-30"),
    "claude-sonnet-4-5": ("Claude Sonnet 4.5", "2026-08-31", "2026-11-30"),
    "claude-sonnet-4-5-20250929": ("Claude Sonnet 4.5", "2026-08-31", "2026-11-30"),
    "claude-opus-4-1": ("Claude Opus 4.1", "2026-02-01", "2026-05-05"),
}

# Bedrock's foundation-model ids for the same models (what an inference profile such as
# `global.anthropic.claude-sonnet-5-5` resolves to).
BEDROCK_IDS = {
    "anthropic.claude-sonnet-5-5": "claude-sonnet-5-5",
    "anthropic.claude-opus-5-5": "claude-opus-5-5",
    "anthropic.claude-haiku-5-5": "claude-haiku-5-5",
    "anthropic.claude-opus-4-8": "claude-opus-4-8",
    "anthropic.claude-sonnet-4-6": "claude-sonnet-4-6",
    "anthropic.claude-haiku-4-5-20251001-v1:0": "claude-haiku-4-5",
    "anthropic.claude-sonnet-4-5-20250929-v1:0": "claude-sonnet-4-5",
}

STAGES = ("active", "deprecated", "retired")
MAX_OUTPUT_TOKENS = 64000  # every model's largest max_tokens, as the Models API reports it
GEO_PREFIXES = ("global.", "us.", "eu.", "apac.", "au.", "jp.", "ca.", "us-gov.")


def anthropic_id(bedrock_id: str) -> str | None:
    """The model behind a Bedrock model id or inference profile id."""
    for prefix in GEO_PREFIXES:
        if bedrock_id.startswith(prefix):
            bedrock_id = bedrock_id[len(prefix):]
            break
    return BEDROCK_IDS.get(bedrock_id)


def _at(day: str | None) -> str | None:
    return f"{day}T00:00:00Z" if day else None


def lifecycle(model_id: str, overrides: dict[str, str], today: str | None = None) -> str | None:
    """The model's stage today, or None if no such model exists."""
    if model_id in overrides:
        return overrides[model_id]
    if model_id not in MODELS:
        return None
    _, deprecated, retires = MODELS[model_id]
    today = today or datetime.now(timezone.utc).date().isoformat()
    if retires and retires <= today:
        return "retired"
    return "deprecated" if deprecated else "active"


# Thinking as each generation takes it (the extended-thinking docs): budget thinking
# (`enabled`) only up to the 4.5 models, both on the 4.6 ones, adaptive only from 4.7 on.
ENABLED_ONLY = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-5", "claude-opus-4-1")
BOTH_KINDS = ("claude-opus-4-6", "claude-sonnet-4-6", "claude-mythos-preview")
NO_EFFORT = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1")


def capabilities(model_id: str) -> dict:
    """The Models API's `capabilities` object for a model (every key present, as the API sends it)."""
    def yes(flag: bool = True) -> dict:
        return {"supported": flag}

    base = next((m for m in (*ENABLED_ONLY, *BOTH_KINDS) if model_id.startswith(m)), None)
    enabled, adaptive = base in (*ENABLED_ONLY, *BOTH_KINDS), base not in ENABLED_ONLY
    effort = base not in NO_EFFORT
    newest = model_id.startswith(("claude-opus-4-7", "claude-opus-4-8")) or "-5" in model_id
    return {
        "batch": yes(), "citations": yes(), "code_execution": yes(), "image_input": yes(), "pdf_input": yes(),
        "structured_outputs": yes(), "context_management": {"supported": True},
        "server_tools": {"supported": True, "code_execution": yes(), "web_search": yes()},
        "effort": {"supported": effort, "low": yes(effort), "medium": yes(effort), "high": yes(effort),
                   "max": yes(effort), "xhigh": yes(effort and newest)},
        "thinking": {"supported": True, "types": {"enabled": yes(enabled), "adaptive": yes(adaptive),
                                                  "disabled": yes(), "between_tools": yes(False)}},
    }


def model_info(model_id: str, overrides: dict[str, str]) -> dict | None:
    """One model as the Models API describes it."""
    stage = lifecycle(model_id, overrides)
    if stage is None:
        return None
    name, deprecated, retires = MODELS.get(model_id, (model_id, None, None))
    if stage != "active" and deprecated is None:  # made deprecated or retired by a test
        deprecated, retires = "2026-01-01", retires or "2027-01-01"
    return {"type": "model", "id": model_id, "display_name": name, "created_at": "2025-01-01T00:00:00Z",
            "lifecycle": stage, "deprecated_at": _at(deprecated) if stage != "active" else None,
            "retires_at": _at(retires) if stage != "active" else None, "max_tokens": MAX_OUTPUT_TOKENS,
            "capabilities": capabilities(model_id)}


def listing(overrides: dict[str, str], stages: list[str]) -> list[dict]:
    """Every model in one of `stages`, newest first as the real API lists them."""
    ids = [*MODELS, *(m for m in overrides if m not in MODELS)]
    return [info for info in (model_info(m, overrides) for m in ids) if info and info["lifecycle"] in stages]


def foundation_models(overrides: dict[str, str]) -> list[dict]:
    """Bedrock's ListFoundationModels summaries; a retired model is not listed, a deprecated one is LEGACY."""
    summaries = []
    for bedrock_id, model_id in BEDROCK_IDS.items():
        info = model_info(model_id, overrides)
        if info is None or info["lifecycle"] == "retired":
            continue
        status = "LEGACY" if info["lifecycle"] == "deprecated" else "ACTIVE"
        lifecycle_ = {"status": status, **({"endOfLifeTime": info["retires_at"]} if info["retires_at"] else {})}
        summaries.append({"modelArn": f"arn:aws:bedrock:us-east-1::foundation-model/{bedrock_id}",
                          "modelId": bedrock_id, "modelName": info["display_name"], "providerName": "Anthropic",
                          "inputModalities": ["TEXT", "IMAGE"], "outputModalities": ["TEXT"],
                          "responseStreamingSupported": True, "inferenceTypesSupported": ["INFERENCE_PROFILE"],
                          "modelLifecycle": lifecycle_})
    return summaries
