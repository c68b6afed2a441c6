"""3. Length: a turn in a conversation with 10 earlier messages beside one with 5,000.

Both histories are seeded the same way (rows + log objects) with messages of
equal size, big enough that both context windows are full: the model then gets
the same number of messages either way, so any difference is the history's
length alone. Turns alternate between the two conversations. Bytes written to
storage per turn: the sizes of the log objects a turn created or changed.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

from bench import seed
from bench.client import Api
from bench.report import Result, brief, noise, percentile, spread
from bench.stack import BenchStack
from shared.models import Conversation

MESSAGE = "Please summarise the discussion so far. " * 25  # 1,000 characters


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            stat = os.stat(os.path.join(root, name))
            found[os.path.join(root, name)] = (stat.st_size, stat.st_mtime_ns)
    return found


def written(before: dict, after: dict) -> int:
    """Bytes in objects that are new or changed since `before`."""
    return sum(size for path, (size, mtime) in after.items() if before.get(path, (None, None))[1] != mtime)


def run(stack: BenchStack, quick: bool) -> Result:
    stack.use_workers(1, stack.settings.worker_concurrency)
    stack.model_control(delay_ms=0)
    long_messages, turns = (500, 11) if quick else (5000, 41)  # the first turn of each is reported apart
    # Each message is large enough that 10 of them already fill MAX_CONTEXT_TOKENS.
    message_chars = stack.settings.max_context_tokens * 4 // 8
    short = seed.history(stack.services, stack.user, 10, message_chars)
    long = seed.history(stack.services, stack.user, long_messages, message_chars)
    with stack.services.sessions() as session:
        folders = {c: stack.storage / session.get(Conversation, uuid.UUID(c)).s3_file_location for c in (short, long)}
    api = Api(stack.api_url, stack.key)
    latency = {short: [], long: []}
    size = {short: [], long: []}
    first = {}
    try:
        for i in range(turns):
            for conversation_id in ((short, long) if i % 2 else (long, short)):
                before = snapshot(folders[conversation_id])
                job, seconds = api.turn(conversation_id, MESSAGE)
                size[conversation_id].append(written(before, snapshot(folders[conversation_id])))
                if i == 0:
                    first[conversation_id] = seconds
                else:
                    latency[conversation_id].append(seconds)
    finally:
        api.close()
    latency_ratio = percentile(latency[long], 50) / percentile(latency[short], 50)
    bytes_ratio = (sum(size[long]) / len(size[long])) / (sum(size[short]) / len(size[short]))
    result = Result(3, "length", config={"earlier_messages": [10, long_messages], "turns_each": turns,
                                         "seeded_message_chars": message_chars,
                                         "max_context_tokens": stack.settings.max_context_tokens})
    result.check(f"p50 latency ratio {long_messages}/10 msgs", latency_ratio, "<=", 1.2)
    result.check("bytes written ratio", bytes_ratio, "<=", 1.0 + 0.005)
    result.show("10 earlier messages", f"{brief(latency[short])}; first (window rebuilt) {first[short] * 1000:.1f} ms; "
                f"{min(size[short])}..{max(size[short])} bytes/turn")
    result.show(f"{long_messages} earlier messages", f"{brief(latency[long])}; first (window rebuilt) "
                f"{first[long] * 1000:.1f} ms; {min(size[long])}..{max(size[long])} bytes/turn")
    result.show("bytes ratio note", "one new object per turn either way; it differs only by the turn "
                "number's digits (target 1.0, checked to 0.5 %)")
    result.show("noise (MAD/median)", f"10: {noise(latency[short])}, {long_messages}: {noise(latency[long])}")
    result.figures.update(latency_short=spread(latency[short]), latency_long=spread(latency[long]),
                          first_turn_ms={"short": round(first[short] * 1000, 2), "long": round(first[long] * 1000, 2)},
                          bytes_per_turn={"short": size[short], "long": size[long]})
    return result
