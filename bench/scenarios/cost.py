"""7. Cost: what a long conversation pays for its prompt, with the cache-stable window.

One conversation of 200 turns: a ~1,400-token system prompt, ~150-word messages, the
offline model's reply, turns 2 minutes apart on the offline model's clock (and 10
minutes apart, to show when a 1-hour cache entry pays). The window is Parley's
(`shared.memory.ConversationMemory`), the request is built and sent by Parley's
Anthropic provider through the real SDK, and the offline model bills the prompt cache
by Anthropic's rules (minimum length, 20-block lookback, TTL refreshed by reads). The
same conversation with the old window (one oldest message dropped per overflow) is
the comparison. Figures are over the turns once the window first filled ("full"):
cache-read share of prompt tokens, the input bill over what it would be with no
caching, and the mean window (messages) over the budget. Prices: shared/pricing.py.
"""
from __future__ import annotations

import random
import statistics

import httpx2

from bench.report import Result
from offline_model import OfflineModelServer
from shared.memory import ConversationMemory, estimate_tokens
from shared.pricing import price_of
from shared.model import AnthropicProvider, ModelRequest

NEEDS_STACK = False  # talks to its own offline model, with the real provider code
MODEL = "claude-sonnet-5-5"
# Short and long words, about 5.3 characters a word with its space: 150 words make ~200 tokens,
# as English prose does.
WORDS = ("the a to of and in it is we you for on that with as at by this our from they be an or are "
         "tide light harbour question answer north river window garden letter morning stone summer "
         "paper train village market bridge winter story music island forest doctor ocean field").split()


class OldWindow(ConversationMemory):
    """The window before issue 14: the oldest message dropped whenever the newest does not fit."""

    def _trim(self) -> None:
        while self.total_tokens > self.max_tokens and self.messages:
            self.total_tokens -= self.messages.pop(0).tokens


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def converse(url: str, budget: int, ttl: str, gap_seconds: int, window: type, turns: int) -> dict:
    rng = random.Random(7)
    # Each run its own system prompt, so no run reads what an earlier one cached.
    system = (f"Run {budget}/{ttl}/{gap_seconds}/{window.__name__}. You are a patient assistant for a travel "
              "company. " + " ".join(_text(rng, 30) for _ in range(35)))
    provider = AnthropicProvider("offline", url, timeout=60, cache_ttl=ttl)
    control = httpx2.Client(base_url=url)  # one connection: a new one per turn costs ~40 ms
    memory = window(budget, low_water=0.6)
    rows, full = [], False
    for seq in range(1, turns + 1):
        content = _text(rng, 150)
        memory.update_memory("user", content, estimate_tokens(content), seq=seq)
        request = ModelRequest(system=system, messages=memory.get_current_context(), model=MODEL, max_tokens=400)
        reply = provider.complete(request)
        memory.measure_last(reply.prompt_tokens, "bench")
        window_tokens = sum(m.tokens for m in memory.sent_messages())
        memory.update_memory("assistant", reply.text, reply.output_tokens, seq=seq)
        full = full or memory.messages[0].seq > 1  # the window has dropped something: it has been full
        rows.append({"full": full, "prompt": reply.prompt_tokens, "read": reply.cache_read_input_tokens,
                     "write": reply.cache_creation_input_tokens, "input": reply.input_tokens,
                     "output": reply.output_tokens, "window": window_tokens})
        control.post("/_control", json={"advance_clock_seconds": gap_seconds}).raise_for_status()
    control.close()
    return _figures([r for r in rows if r["full"]] or rows, budget, ttl)


def _input_bill(rows: list[dict], model: str, ttl: str) -> float:
    price = price_of(model)
    write = price.cache_write_1h if ttl == "1h" else price.cache_write_5m
    return sum(r["input"] * price.input + r["write"] * write + r["read"] * price.cache_read for r in rows)


def _figures(rows: list[dict], budget: int, ttl: str) -> dict:
    price = price_of(MODEL)
    prompt = sum(r["prompt"] for r in rows)
    billed = _input_bill(rows, MODEL, ttl)
    # The same tokens at Sonnet 4.5's prices, where a cache read costs 0.1x input (Sonnet 5.5: 0.05x).
    billed_01 = _input_bill(rows, "claude-sonnet-4-5", ttl) / price_of("claude-sonnet-4-5").input
    output = sum(r["output"] * price.output for r in rows)
    return {"turns": len(rows), "read_share": round(sum(r["read"] for r in rows) / prompt, 3),
            "write_share": round(sum(r["write"] for r in rows) / prompt, 3),
            "bill_ratio": round(billed / (prompt * price.input), 3),
            "bill_ratio_at_read_0_1x": round(billed_01 / prompt, 3),
            "window_ratio": round(statistics.mean(r["window"] for r in rows) / budget, 3),
            "mean_prompt_tokens": round(prompt / len(rows)), "prompt_ratio": round(prompt / len(rows) / budget, 3),
            "input_usd_per_turn": round(billed / 1e6 / len(rows), 5),
            "uncached_usd_per_turn": round(prompt * price.input / 1e6 / len(rows), 5),
            "usd_per_turn": round((billed + output) / 1e6 / len(rows), 5)}


def run(stack, quick: bool) -> Result:
    turns = 100 if quick else 200  # a 32k window fills after ~80 turns
    result = Result(7, "cost", config={"turns": turns, "model": MODEL, "system_tokens": "~1,400",
                                       "message_words": 150, "low_water": 0.6})
    runs = {}
    with OfflineModelServer() as server:
        httpx2.post(server.url + "/_control", json={"chunk_chars": 1 << 20}).raise_for_status()  # one delta a reply
        for budget in (8000, 32000):
            for ttl in ("5m", "1h"):
                for gap in (120, 600):
                    runs[f"stable {budget} {ttl} gap {gap // 60}m"] = converse(
                        server.url, budget, ttl, gap, ConversationMemory, turns)
                runs[f"old {budget} {ttl} gap 2m"] = converse(server.url, budget, ttl, 120, OldWindow, turns)
    result.figures["runs"] = runs
    for budget in (8000, 32000):
        main = runs[f"stable {budget} 5m gap 2m"]
        result.check(f"read share {budget // 1000}k", main["read_share"], ">=", 0.85)
        result.check(f"bill / uncached {budget // 1000}k", main["bill_ratio"], "<=", 0.3)
        result.check(f"mean window / budget {budget // 1000}k", main["window_ratio"], ">=", 0.6)
    for name, figures in runs.items():
        result.show(name, f"read {figures['read_share']:.2f}, bill {figures['bill_ratio']:.2f}x uncached "
                    f"({figures['bill_ratio_at_read_0_1x']:.2f}x at 0.1x reads), window "
                    f"{figures['window_ratio']:.2f} of budget, ${figures['usd_per_turn']:.4f}/turn "
                    f"(input ${figures['input_usd_per_turn']:.4f}, uncached ${figures['uncached_usd_per_turn']:.4f})")
    return result
