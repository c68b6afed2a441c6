"""The interactive chat: pick or start a conversation, then type; replies stream in."""
from __future__ import annotations

import json
import sys
from typing import TextIO

from client.api import FINAL_EVENTS, ClientError, Parley
from client.sse import Event
from client.tools import Tool, run_calls

PROMPT = "you> "
SPEAKER = "claude> "
RESTARTED = "[reply restarted]"
THINKING = "[thinking...]"  # extended thinking, collapsed: the reply's thought is not printed
HISTORY_PAGE = 10  # messages shown on opening a conversation, and per /older
OLDER = "/older"


class ReplyPrinter:
    """Prints one reply from its events: deltas as they come, a marker where the
    server says to discard the partial text, and the outcome."""

    def __init__(self, out: TextIO):
        self.out, self.shown, self.started, self.thinking = out, "", False, False
        self.job_id: str | None = None
        self.final: str | None = None
        self.job: dict = {}  # the job as it ended

    def handle(self, event: Event) -> bool:
        """Print `event`; True once the reply has ended."""
        data = event.data if isinstance(event.data, dict) else {}
        self.job_id = self.job_id or data.get("job_id") or (data.get("id") if event.type.startswith("job.") else None)
        if event.type == "message.delta":
            self._write(str(data.get("text", "")))
        elif event.type == "thinking.delta" and not self.thinking:
            self.out.write(THINKING + "\n")
            self.out.flush()
            self.thinking = True
        elif event.type == "message.reset":
            if self.shown:
                self.out.write(f"\n{RESTARTED}\n")
                self.started, self.shown = False, ""
        elif event.type in FINAL_EVENTS:
            self.end(event.type.removeprefix("job."), data)
            return True
        return False

    def end(self, status: str, job: dict) -> None:
        """Finish the reply with the job's outcome (from a final event or the job itself)."""
        self.final, self.job = status, job
        if status == "requires_action":  # Claude called tools: the caller runs them (client/tools.py)
            if self.shown:
                self.out.write("\n")
        elif status == "succeeded":
            content = str((job.get("reply") or {}).get("content", ""))
            if not content.startswith(self.shown):
                self.out.write(f"\n{RESTARTED}\n")
                self.started, self.shown = False, ""
            self._write(content[len(self.shown):])
            self.out.write("\n")
            if note := _outcome_note(job.get("reply") or {}):
                self.out.write(note + "\n")
        else:
            error = job.get("error") or {}
            reason = f"{error.get('type', status)}: {error.get('message', '')}".rstrip(": ")
            self.out.write(("\n" if self.shown else "") + (f"[{status}: {reason}]\n" if status == "failed"
                                                           else "[cancelled]\n"))
        self.out.flush()

    def _write(self, text: str) -> None:
        if not self.started:
            self.out.write(SPEAKER)
            self.started = True
        self.out.write(text)
        self.shown += text
        self.out.flush()


def send(parley: Parley, conversation_id: str, content: str, out: TextIO, tools: dict[str, Tool] | None = None
         ) -> str:
    """Send one message and print its reply, running the tools Claude calls and sending
    their results until it answers; Ctrl-C cancels the job. Returns the final status."""
    definitions = [tool.definition for tool in (tools or {}).values()]
    printer = _reply(parley, out, lambda: parley.send(conversation_id, content, definitions))
    while printer.final == "requires_action":
        results = run_calls(tools or {}, printer.job["required_action"]["tool_calls"], out)
        continuation = parley.tool_results(printer.job["id"], results)
        printer = _reply(parley, out, lambda: parley.follow(continuation["id"]))
    return printer.final


def _reply(parley: Parley, out: TextIO, open_reply) -> ReplyPrinter:
    """Print one job's reply; the printer holds how it ended."""
    printer = ReplyPrinter(out)
    try:
        with open_reply() as reply:
            printer.job_id = reply.job_id
            try:
                for event in reply.events():
                    if printer.handle(event):
                        return printer
            except ClientError:
                if printer.job_id is None:
                    raise
                # The stream broke; the job goes on. Fall through to waiting for it.
        if printer.job_id is None:
            raise ClientError("the server did not say which job took the message")
        job = parley.wait(printer.job_id)
        printer.end(job["status"], job)
        return printer
    except KeyboardInterrupt:
        out.write("\n")
        if printer.job_id is None:
            out.write("[stopped]\n")
        else:
            cancelled = parley.cancel(printer.job_id)
            out.write("[cancelled]\n" if cancelled else "[the reply had already ended]\n")
        out.flush()
        printer.final = "cancelled"
        return printer


class History:
    """What the user has scrolled back through: the newest page on opening, then one
    older page per /older, fetched only when asked (a long conversation is never loaded whole)."""

    def __init__(self, parley: Parley, conversation_id: str):
        self.parley, self.conversation_id = parley, conversation_id
        self.cursor: str | None = None
        self.more = True

    def show(self, out: TextIO) -> None:
        if not self.more:
            out.write("[no earlier messages]\n")
            return
        page = self.parley.messages(self.conversation_id, HISTORY_PAGE, self.cursor)
        if self.cursor is not None:
            out.write("[earlier]\n")
        for message in reversed(page["data"]):  # newest first on the wire, oldest first on screen
            out.write(f"{PROMPT if message['role'] == 'user' else SPEAKER}{_shown(message['content'])}\n")
        self.cursor, self.more = page["last_cursor"], page["has_more"]
        if self.more:
            out.write(f"[{OLDER} shows earlier messages]\n")
        out.flush()


def choose_conversation(parley: Parley, out: TextIO) -> dict:
    conversations = parley.conversations()
    if conversations:
        out.write("Your conversations, newest first:\n")
        for number, conversation in enumerate(conversations, 1):
            name = conversation.get("name") or "(no name)"
            out.write(f"  {number:>2}. {name}  ({conversation.get('message_count', 0)} messages)\n")
        answer = input("Pick a number, or type a name for a new conversation (Enter: new): ").strip()
        if answer.isdigit() and 1 <= int(answer) <= len(conversations):
            return conversations[int(answer) - 1]
    else:
        out.write("No conversations yet.\n")
        answer = input("Name for a new conversation (Enter: none): ").strip()
    return parley.create_conversation(answer or None)


def chat(parley: Parley, out: TextIO = sys.stdout, conversation_id: str | None = None,
         tools: dict[str, Tool] | None = None) -> int:
    """The session: returns the exit status."""
    try:
        if conversation_id is None:
            conversation = choose_conversation(parley, out)
            conversation_id = conversation["id"]
            out.write(f"Conversation {conversation.get('name') or conversation_id}. "
                      "Ctrl-C stops a reply, Ctrl-D quits.\n")
        history = History(parley, conversation_id)
        history.show(out)
        while True:
            try:
                line = input(PROMPT)
            except EOFError:
                out.write("\n")
                return 0
            if not line.strip():
                continue
            try:
                if line.strip() == OLDER:
                    history.show(out)
                    continue
                send(parley, conversation_id, line, out, tools)
            except ClientError as error:
                if error.fatal:
                    raise
                out.write(f"error: {error}\n")
    except KeyboardInterrupt:  # at a prompt: leave quietly
        out.write("\n")
        return 130


def _outcome_note(reply: dict) -> str | None:
    """A line under a reply that is not a plain, complete answer (see the README's table)."""
    if reply.get("outcome") == "refused":
        return f"[refused: {reply.get('notice') or 'Claude declined to answer; rephrase to go on.'}]"
    if reply.get("outcome") == "truncated":
        return f"[cut short ({reply.get('stop_reason')}): say \"continue\" for the rest]"
    return None


def _shown(content) -> str:
    """A stored message as a line: its text, and its tool calls and results in brackets."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if block.get("type") == "text":
            parts.append(block["text"])
        elif block.get("type") == "tool_use":
            parts.append(f"[tool {block['name']} {json.dumps(block.get('input') or {})}]")
        elif block.get("type") == "tool_result":
            result = block.get("content")
            text = result if isinstance(result, str) else " ".join(b.get("text", "") for b in result or [])
            parts.append(f"[{'tool error' if block.get('is_error') else 'tool result'}: {text}]")
    return " ".join(parts)
