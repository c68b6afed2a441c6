"""Bedrock's Converse and ConverseStream wire formats (AWS event-stream framing)."""
from __future__ import annotations

import time
from urllib.parse import unquote

from offline_model import catalog
from offline_model.media import attachment_note, from_converse_media, media_key, received_in
from offline_model.messages import BadRequest, paced, prompt_tokens, text_of, validate_messages
from offline_model.thinking import (converse_frames, from_converse, signature_problem, thinking_problem,
                                    thinking_tokens, thinks, thought_blocks)
from offline_model.tools import (converse_frames as tool_frames, converse_tools, from_converse_tool, tool_reply,
                                 tools_problem)
from offline_model.wire import (BEDROCK_ERRORS, TooManyBreakpoints, bedrock_blocks, estimate_tokens,
                                event_stream_message, reply_text, scripted_answer)


class ConverseRoutes:
    """Mixed into the request handler: POST /model/{id}/converse and /converse-stream."""

    def _converse(self) -> None:
        path = self.path.split("?", 1)[0]
        streaming = path.endswith("/converse-stream")
        if not (streaming or path.endswith("/converse")):
            self._send_bedrock_error(404, "ResourceNotFoundException", f"Not found: {path}", {})
            return
        body = self._read_json()
        _number, settings, fault = self._arrive(body)
        self.server.stopping.wait(settings["delay_ms"] / 1000)
        model_id = unquote(path.split("/")[2])
        with self.server.lock:
            stage = catalog.lifecycle(catalog.anthropic_id(model_id) or "", dict(self.server.lifecycle))
        if stage in (None, "retired"):
            message = ("This model version has reached the end of its life." if stage else
                       "The provided model identifier is invalid.")
            self._send_bedrock_error(404 if stage else 400, "ResourceNotFoundException" if stage
                                     else "ValidationException", message, {})
            return
        try:
            messages = validate_messages({"messages": [
                {"role": m.get("role"), "content": [converted or from_converse(b) for b in m.get("content", [])
                                                    if (converted := from_converse_media(b) or from_converse_tool(b))
                                                    or "text" in b or "reasoningContent" in b]}
                for m in body.get("messages") or []]})
            media = received_in(messages, {}, "")
            extra = body.get("additionalModelRequestFields") or {}
            thinking = extra.get("thinking")
            if problem := (thinking_problem(model_id, thinking, (body.get("inferenceConfig") or {}).get("maxTokens"),
                                            (extra.get("output_config") or {}).get("effort"))
                           or signature_problem(messages) or tools_problem(messages, converse_tools(body)[0])):
                raise BadRequest(problem)
            if thinks(thinking) and "temperature" in (body.get("inferenceConfig") or {}):
                raise BadRequest("temperature may only be set to 1 when thinking is enabled")
        except BadRequest as exc:
            self._send_bedrock_error(400, "ValidationException", str(exc), {})
            return
        if self._fault_before_output(fault, BEDROCK_ERRORS, self._send_bedrock_error):
            return
        reply, stop_reason = reply_text(messages, text_of, (body.get("inferenceConfig") or {}).get("maxTokens"))
        reply += attachment_note(media) if stop_reason == "end_turn" else ""
        if scripted := scripted_answer(messages, text_of):  # Converse reports a refusal as content_filtered
            reply, stop_reason = scripted[0], "content_filtered" if scripted[1] == "refusal" else scripted[1]
        tool_blocks: list[dict] = []
        if not scripted and (called := tool_reply(messages, *converse_tools(body), text_of, _number)):
            reply, tool_blocks, stop_reason = called
        system_text = "".join(b.get("text", "") for b in body.get("system") or [])
        input_tokens = prompt_tokens(messages, system_text) + sum(r.tokens for m in media for r in m)
        try:
            with self.server.lock:
                cached = self.server.cache.usage(path.split("/")[2], bedrock_blocks(body, media_key(media)),
                                                 input_tokens,
                                                 time.monotonic() + self.server.clock_offset)
        except TooManyBreakpoints as exc:
            self._send_bedrock_error(400, "ValidationException", str(exc), {})
            return
        thoughts = thought_blocks(messages, text_of) if thinks(thinking) and reply else []
        output_tokens = estimate_tokens(reply) + thinking_tokens(thoughts)
        usage = {"inputTokens": cached["input_tokens"], "outputTokens": output_tokens,
                 "totalTokens": input_tokens + output_tokens,
                 "cacheReadInputTokens": cached["cache_read_input_tokens"],
                 "cacheWriteInputTokens": cached["cache_creation_input_tokens"]}
        if not streaming:
            reasoning = [{"reasoningContent": {"reasoningText": {"text": t["thinking"], "signature": t["signature"]}}
                          if t["type"] == "thinking" else {"redactedContent": t["data"]}} for t in thoughts]
            self._send_json(200, {"output": {"message": {"role": "assistant",
                                                         "content": [*reasoning, {"text": reply}, *(
                                                             {"toolUse": {"toolUseId": b["id"], "name": b["name"],
                                                                          "input": b["input"]}}
                                                             for b in tool_blocks)]}},
                                  "stopReason": stop_reason, "usage": usage, "metrics": {"latencyMs": 1}})
            return
        chunks, gap = paced(reply, settings)
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        frames = [("messageStart", {"role": "assistant"})]
        for index, block in enumerate(thoughts):
            frames += converse_frames(index, block, settings["chunk_chars"])
        text_index = len(thoughts)
        frames += [("contentBlockDelta", {"delta": {"text": chunk}, "contentBlockIndex": text_index})
                   for chunk in chunks]
        frames += [("contentBlockStop", {"contentBlockIndex": text_index})]
        for offset, block in enumerate(tool_blocks):
            frames += tool_frames(text_index + 1 + offset, block)
        frames += [("messageStop", {"stopReason": stop_reason}),
                   ("metadata", {"usage": usage, "metrics": {"latencyMs": 1}})]
        for i, (kind, payload) in enumerate(frames):
            if fault == "cut_midstream" and i == len(frames) // 2:
                self._cut()
                return
            if fault == "overloaded_midstream" and i == len(frames) // 2:
                self._chunk(event_stream_message("serviceUnavailableException", {"message": "Model is overloaded."},
                                                 message_type="exception"))
                break
            if kind == "contentBlockDelta" and i > 1 and gap:
                self.server.stopping.wait(gap)
            self._chunk(event_stream_message(kind, payload))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _send_bedrock_error(self, status: int, kind: str, message: str, headers: dict) -> None:
        self._send_json(status, {"message": message}, {"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/",
                                                       **headers})
