"""A reply's content blocks assembled from raw stream events, as each provider's client
library hands them over: the Messages API's events parsed by the anthropic SDK's own
types, ConverseStream's as boto3 yields them (dicts, redacted reasoning as bytes)."""
from __future__ import annotations

import base64

import pytest
from anthropic._models import construct_type
from anthropic.types import RawMessageStreamEvent

from shared.model.blocks import (AnthropicBlocks, ConverseBlocks, assistant_content, converse_block,
                                 visible_tokens, without_thinking)

SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"


def sdk_events(*raw: dict) -> list:
    """Events as the SDK parses them off the wire (what `messages.create(stream=True)` yields)."""
    return [construct_type(type_=RawMessageStreamEvent, value=event) for event in raw]


def start(index: int, block: dict) -> dict:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, **body) -> dict:
    return {"type": "content_block_delta", "index": index, "delta": body}


def stop(index: int) -> dict:
    return {"type": "content_block_stop", "index": index}


def test_thinking_then_text_with_the_signature_and_callbacks_in_order():
    heard = []
    blocks = AnthropicBlocks(on_text=lambda t: heard.append(("text", t)),
                             on_thinking=lambda t: heard.append(("thinking", t)))
    for event in sdk_events(
            start(0, {"type": "thinking", "thinking": "", "signature": ""}),
            delta(0, type="thinking_delta", thinking="Let me "), delta(0, type="thinking_delta", thinking="add."),
            delta(0, type="signature_delta", signature=SIGNATURE), stop(0),
            start(1, {"type": "text", "text": ""}),
            delta(1, type="text_delta", text="It is "), delta(1, type="text_delta", text="4."), stop(1)):
        assert blocks.take(event)
    assert blocks.finish() == ({"type": "thinking", "thinking": "Let me add.", "signature": SIGNATURE},
                               {"type": "text", "text": "It is 4."})
    assert heard == [("thinking", "Let me "), ("thinking", "add."), ("text", "It is "), ("text", "4.")]


def test_redacted_thinking_tool_calls_and_citations():
    blocks = AnthropicBlocks()
    citation = {"type": "char_location", "cited_text": "Paris", "document_index": 0, "document_title": "Atlas",
                "start_char_index": 0, "end_char_index": 5}
    for event in sdk_events(
            start(0, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"}), stop(0),
            start(1, {"type": "text", "text": ""}), delta(1, type="text_delta", text="Paris"),
            delta(1, type="citations_delta", citation=citation), stop(1),
            start(2, {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}),
            delta(2, type="input_json_delta", partial_json='{"city": "Pa'),
            delta(2, type="input_json_delta", partial_json='ris", "days": 2}'), stop(2),
            start(3, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}),
            stop(3)):  # a call without arguments streams no input at all
        blocks.take(event)
    redacted, text, tool, server = blocks.finish()
    assert redacted == {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"}
    assert text["text"] == "Paris" and text["citations"][0]["cited_text"] == "Paris"
    assert tool == {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris", "days": 2}}
    assert server["input"] == {}


def test_other_events_are_left_to_the_reply_and_an_empty_text_block_is_dropped():
    blocks = AnthropicBlocks()
    message_stop, = sdk_events({"type": "message_stop"})
    assert not blocks.take(message_stop)
    for event in sdk_events(start(0, {"type": "text", "text": ""}), stop(0)):
        blocks.take(event)
    assert blocks.finish() == ()


def test_converse_stream_reasoning_text_and_tool_use():
    heard = []
    blocks = ConverseBlocks(on_text=lambda t: heard.append(("text", t)),
                            on_thinking=lambda t: heard.append(("thinking", t)))
    raw = b"\x00\x01opaque"
    for event in [
            {"messageStart": {"role": "assistant"}},
            {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Hmm, "}}}},
            {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "two."}}}},
            {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": SIGNATURE}}}},
            {"contentBlockStop": {"contentBlockIndex": 0}},
            {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"reasoningContent": {"redactedContent": raw}}}},
            {"contentBlockStop": {"contentBlockIndex": 1}},
            {"contentBlockDelta": {"contentBlockIndex": 2, "delta": {"text": "Two."}}},
            {"contentBlockStop": {"contentBlockIndex": 2}},
            {"contentBlockStart": {"contentBlockIndex": 3, "start": {"toolUse": {"toolUseId": "t1", "name": "calc"}}}},
            {"contentBlockDelta": {"contentBlockIndex": 3, "delta": {"toolUse": {"input": '{"x": 1}'}}}},
            {"contentBlockStop": {"contentBlockIndex": 3}}]:
        blocks.take(event)
    assert not blocks.take({"messageStop": {"stopReason": "tool_use"}})
    thinking, redacted, text, tool = blocks.finish()
    assert thinking == {"type": "thinking", "thinking": "Hmm, two.", "signature": SIGNATURE}
    assert redacted == {"type": "redacted_thinking", "data": base64.b64encode(raw).decode()}
    assert text == {"type": "text", "text": "Two."}
    assert tool == {"type": "tool_use", "id": "t1", "name": "calc", "input": {"x": 1}}
    assert heard == [("thinking", "Hmm, "), ("thinking", "two."), ("text", "Two.")]
    # Back to Converse exactly as they came: the redacted bytes, the signature, the tool call.
    assert converse_block(thinking) == {"reasoningContent": {"reasoningText": {"text": "Hmm, two.",
                                                                               "signature": SIGNATURE}}}
    assert converse_block(redacted) == {"reasoningContent": {"redactedContent": raw}}
    assert converse_block(tool) == {"toolUse": {"toolUseId": "t1", "name": "calc", "input": {"x": 1}}}


@pytest.mark.parametrize("blocks, stored", [
    ((), "text"),
    (({"type": "text", "text": "text"},), "text"),
    (({"type": "thinking", "thinking": "t", "signature": "s"}, {"type": "text", "text": "text"}), "blocks"),
])
def test_a_reply_stores_blocks_only_when_it_has_more_than_text(blocks, stored):
    content = assistant_content(blocks, "text")
    assert content == ("text" if stored == "text" else list(blocks))


def test_thinking_is_left_out_unless_asked_and_not_counted_twice_in_the_window():
    content = [{"type": "thinking", "thinking": "x" * 400, "signature": "s"}, {"type": "text", "text": "Hi"}]
    assert without_thinking(content) == "Hi"
    with_tool = [*content, {"type": "tool_use", "id": "t", "name": "n", "input": {}}]
    assert without_thinking(with_tool) == with_tool[1:]
    assert without_thinking("plain") == "plain"
    assert visible_tokens(150, 0, content) == 50  # 400 characters of thinking, about 100 tokens
    assert visible_tokens(150, 120, content) == 30  # the provider's own figure wins
    assert visible_tokens(10, 120, content) == 1


def test_blocks_go_back_unchanged_with_the_cache_breakpoint_never_on_thinking():
    from shared.model.anthropic_api import anthropic_messages

    thinking = {"type": "thinking", "thinking": "t", "signature": SIGNATURE}
    messages = [{"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [thinking, {"type": "text", "text": "Hello"}]},
                {"role": "user", "content": "Again"},
                {"role": "assistant", "content": [{"type": "text", "text": "So"}, thinking]}]
    sent = anthropic_messages(messages)
    assert sent[1]["content"] == messages[1]["content"]  # an earlier turn's blocks, exactly
    assert sent[3]["content"] == [{"type": "text", "text": "So", "cache_control": {"type": "ephemeral"}}, thinking]
    assert messages[3]["content"][0] == {"type": "text", "text": "So"}  # the window's own copy is untouched


def test_a_retry_after_thinking_was_streamed_tells_readers_to_start_over():
    from shared.model import ModelReply, ModelRequest, RetryingProvider, RetryPolicy
    from shared.model.types import model_error

    class ThinksThenFails:  # the model edge: the first attempt breaks off after some thinking
        calls = 0

        def complete(self, request):
            self.calls += 1
            request.on_thinking("Let me")
            if self.calls == 1:
                raise model_error("overloaded")
            request.on_text("Hi")
            return ModelReply("Hi", request.model, 1, 1)

    heard = []
    provider = RetryingProvider(ThinksThenFails(), RetryPolicy(max_retries=2, budget_seconds=5, base_seconds=0.001,
                                                               cap_seconds=0.001))
    provider.complete(ModelRequest(None, [{"role": "user", "content": "q"}], "m", 10,
                                   on_thinking=lambda t: heard.append(t), on_text=lambda t: heard.append(t),
                                   on_reset=lambda: heard.append("RESET")))
    assert heard == ["Let me", "RESET", "Let me", "Hi"]
