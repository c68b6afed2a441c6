"""Model providers: how a window becomes a reply.

`types` is the port the pipeline uses; `anthropic_api` and `bedrock` are its two
adapters; `retry` is the one retry layer around them (shared/bootstrap.py assembles
them). Cancelling a call is `shared.cancel`.
"""
from shared.model.anthropic_api import AnthropicProvider
from shared.model.bedrock import BedrockProvider
from shared.model.retry import RetryingProvider, RetryPolicy
from shared.model.types import ERROR_KINDS, ModelError, ModelProvider, ModelReply, ModelRequest

__all__ = ["ERROR_KINDS", "AnthropicProvider", "BedrockProvider", "ModelError", "ModelProvider", "ModelReply",
           "ModelRequest", "RetryPolicy", "RetryingProvider"]
