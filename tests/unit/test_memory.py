"""ConversationMemory: the token-budgeted context window (pure, no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.memory import ConversationMemory, Message, estimate_tokens


def feed(memory: ConversationMemory, messages: list[Message]) -> ConversationMemory:
    for m in messages:
        memory.update_memory(m.role, m.content, tokens=m.tokens)
    return memory


def conversation(*tokens: int) -> list[Message]:
    """Alternating user/assistant messages with the given token counts."""
    return [
        Message("user" if i % 2 == 0 else "assistant", f"{'u' if i % 2 == 0 else 'a'}{i}", t)
        for i, t in enumerate(tokens)
    ]


def turns_of(messages: list[Message]) -> list[list[Message]]:
    """A user message and what follows it; leading assistant messages are a turn of their own."""
    turns: list[list[Message]] = []
    for m in messages:
        if not turns or m.role == "user":
            turns.append([])
        turns[-1].append(m)
    return turns


def expected_window(messages: list[Message], budget: int, low_water: float = 0.6) -> list[Message]:
    """The spec, replayed message by message: past the budget, drop the oldest whole turns
    down to low_water x budget, never the newest turn unless it alone is past the budget."""
    window: list[Message] = []
    for m in messages:
        window.append(m)
        if sum(w.tokens for w in window) > budget:
            turns = turns_of(window)
            while len(turns) > 1 and sum(w.tokens for t in turns for w in t) > int(budget * low_water):
                turns.pop(0)
            window = [w for t in turns for w in t]
            if sum(w.tokens for w in window) > budget:
                window = []
    return window


# ---------------------------------------------------------------- examples


def test_window_drops_oldest_whole_turns_down_to_the_low_water_mark():
    msgs = conversation(2, 2, 2, 2, 2, 2)  # u0 a1 u2 a3 u4 a5: 12 tokens, the budget
    memory = feed(ConversationMemory(12, low_water=0.5), msgs)
    assert memory.messages == msgs  # at the budget, nothing goes
    memory.update_memory("user", "u6", tokens=2)  # 14 > 12: down to 6 or less, in one step
    assert [m.content for m in memory.messages] == ["u4", "a5", "u6"]
    assert memory.total_tokens == 6
    assert memory.get_current_context()[0] == {"role": "user", "content": "u4"}


def test_the_head_stays_put_until_the_next_drop():
    memory = ConversationMemory(20, low_water=0.5)
    heads = []
    for i, m in enumerate(conversation(*([2] * 30))):
        memory.update_memory(m.role, m.content, tokens=m.tokens, seq=i // 2 + 1)
        heads.append(memory.window_start)
    drops = [i for i in range(1, len(heads)) if heads[i] != heads[i - 1]]
    # 20 tokens hold 10 messages; each drop leaves 10 tokens, so one drop every 6 messages (3 turns)
    assert drops == [10, 16, 22, 28]
    assert all(heads[i] == heads[i - 1] for i in range(1, len(heads)) if i not in drops)


def test_never_cuts_a_message():
    long_text = "word " * 200
    memory = ConversationMemory(100)
    memory.update_memory("user", "first question", tokens=10)
    memory.update_memory("assistant", long_text, tokens=60)
    memory.update_memory("user", "follow-up", tokens=35)
    # 10 + 60 + 35 > 100: the oldest whole turn goes, with its long reply intact.
    assert [m.content for m in memory.messages] == ["follow-up"]
    assert memory.get_current_context() == [{"role": "user", "content": "follow-up"}]


def test_message_larger_than_budget_alone_gives_empty_context():
    memory = ConversationMemory(50)
    memory.update_memory("user", "hi", tokens=5)
    memory.update_memory("assistant", "hello", tokens=5)
    memory.update_memory("user", "huge", tokens=51)
    assert memory.messages == []
    assert memory.total_tokens == 0
    assert memory.get_current_context() == []
    # The window refills from the next message on.
    memory.update_memory("assistant", "ok", tokens=3)
    memory.update_memory("user", "again", tokens=3)
    assert memory.get_current_context() == [{"role": "user", "content": "again"}]
    assert memory.total_tokens == 6


def test_window_of_only_an_assistant_message_gives_empty_context():
    memory = ConversationMemory(5)
    memory.update_memory("assistant", "a", tokens=4)
    assert memory.get_current_context() == []


def test_roles_alternate():
    memory = feed(ConversationMemory(1000), conversation(*([3] * 11)))
    roles = [item["role"] for item in memory.get_current_context()]
    assert roles[0] == "user"
    assert all(a != b for a, b in zip(roles, roles[1:]))
    assert len(roles) == 11


def test_consecutive_same_role_messages_are_merged_so_roles_alternate():
    memory = ConversationMemory(1000)
    memory.update_memory("user", "first", tokens=2)
    memory.update_memory("user", "second", tokens=2)  # e.g. the reply to `first` failed
    memory.update_memory("assistant", "answer", tokens=2)
    assert memory.get_current_context() == [
        {"role": "user", "content": "first\n\nsecond"},
        {"role": "assistant", "content": "answer"},
    ]
    # The stored messages themselves are untouched.
    assert [m.content for m in memory.messages] == ["first", "second", "answer"]


def test_json_round_trip_gives_an_equal_memory():
    memory = ConversationMemory(40, turn_seq=7)
    memory.update_memory("user", "héllo 👋 \"quoted\"\nnew line")
    memory.update_memory("assistant", "日本語の返事", tokens=9)
    raw = memory.to_json()
    restored = ConversationMemory.from_json(raw)
    assert restored == memory
    assert restored.turn_seq == 7
    assert restored.max_tokens == 40
    assert restored.messages == memory.messages
    assert restored.total_tokens == memory.total_tokens
    assert restored.get_current_context() == memory.get_current_context()
    assert ConversationMemory.from_json(raw.encode()) == memory


def test_memories_with_different_turn_seq_are_not_equal():
    a = feed(ConversationMemory(10, turn_seq=1), conversation(1, 1))
    b = feed(ConversationMemory(10, turn_seq=2), conversation(1, 1))
    assert a != b


@pytest.mark.parametrize("role", ["system", "User", "", "tool"])
def test_update_memory_rejects_a_bad_role(role):
    memory = ConversationMemory(100)
    with pytest.raises(ValueError):
        memory.update_memory(role, "text")
    assert memory.messages == []
    assert memory.total_tokens == 0


def test_explicit_tokens_override_the_estimate():
    memory = ConversationMemory(10)
    memory.update_memory("user", "x" * 400, tokens=3)  # estimate would be 100
    assert memory.messages == [Message("user", "x" * 400, 3)]
    assert memory.total_tokens == 3


def test_estimate_is_used_when_tokens_are_not_given():
    memory = ConversationMemory(1000)
    memory.update_memory("user", "x" * 400)
    assert memory.messages[0].tokens == estimate_tokens("x" * 400) == 100


@pytest.mark.parametrize("text, expected", [("", 1), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 41, 11)])
def test_estimate_tokens(text, expected):
    assert estimate_tokens(text) == expected


# ---------------------------------------------------------------- properties

texts = st.text(max_size=12)
token_counts = st.integers(min_value=1, max_value=50)
turns_strategy = st.lists(st.tuples(texts, token_counts, texts, token_counts), max_size=15)
trailing_strategy = st.none() | st.tuples(texts, token_counts)
budgets = st.integers(min_value=1, max_value=400)

PROPS = settings(derandomize=True, max_examples=300, deadline=None)


def build_messages(turns, trailing) -> list[Message]:
    # Contents are made unique (by position) so "the same message" is checkable.
    messages: list[Message] = []
    for i, (user_text, user_tokens, assistant_text, assistant_tokens) in enumerate(turns):
        messages.append(Message("user", f"u{i}:{user_text}", user_tokens))
        messages.append(Message("assistant", f"a{i}:{assistant_text}", assistant_tokens))
    if trailing is not None:
        messages.append(Message("user", f"last:{trailing[0]}", trailing[1]))
    return messages


low_waters = st.sampled_from([0.0, 0.3, 0.6, 1.0])


@PROPS
@given(turns=turns_strategy, trailing=trailing_strategy, budget=budgets, low_water=low_waters)
def test_property_window_follows_the_spec_after_every_update(turns, trailing, budget, low_water):
    messages = build_messages(turns, trailing)
    memory = ConversationMemory(budget, low_water=low_water)
    for i, m in enumerate(messages):
        before = list(memory.messages)
        memory.update_memory(m.role, m.content, tokens=m.tokens)
        assert memory.messages == expected_window(messages[: i + 1], budget, low_water)
        assert memory.total_tokens == sum(w.tokens for w in memory.messages) <= budget
        if before + [m] != memory.messages:  # a drop: only when the budget was passed, and in one step
            assert sum(w.tokens for w in before) + m.tokens > budget
            assert memory.total_tokens <= budget * low_water or len(turns_of(memory.messages)) <= 1


@PROPS
@given(turns=turns_strategy, trailing=trailing_strategy, budget=budgets)
def test_property_context_is_api_valid(turns, trailing, budget):
    messages = build_messages(turns, trailing)
    memory = feed(ConversationMemory(budget), messages)
    context = memory.get_current_context()

    if context:
        assert context[0]["role"] == "user"
    roles = [item["role"] for item in context]
    assert all(a != b for a, b in zip(roles, roles[1:]))
    originals = {m.content for m in messages}
    for item in context:
        assert set(item) == {"role", "content"}
        assert item["content"] in originals
    if messages and messages[-1].role == "user" and messages[-1].tokens <= budget:
        assert context[-1]["content"] == messages[-1].content  # the newest turn is never dropped


@PROPS
@given(turns=turns_strategy, trailing=trailing_strategy, budget=budgets,
       turn_seq=st.integers(min_value=0, max_value=10**9))
def test_property_json_round_trip(turns, trailing, budget, turn_seq):
    memory = feed(ConversationMemory(budget, turn_seq=turn_seq), build_messages(turns, trailing))
    restored = ConversationMemory.from_json(memory.to_json())
    assert restored == memory
    assert restored.messages == memory.messages
    assert restored.total_tokens == memory.total_tokens
    assert restored.turn_seq == turn_seq
    assert restored.to_json() == memory.to_json()


# ------------------------------------------------ any sequence of messages

roles = st.sampled_from(["user", "assistant"])
any_messages = st.lists(st.tuples(roles, texts, st.integers(min_value=0, max_value=60)), max_size=25)


@PROPS
@given(raw=any_messages, budget=budgets, low_water=low_waters)
def test_property_replaying_from_the_window_start_rebuilds_it(raw, budget, low_water):
    """worker.window.rebuild_window replays the turns from where the stored window
    started: whatever the history, that gives the window that was cached."""
    messages = [Message(role, f"{i}:{text}", tokens, seq=i + 1) for i, (role, text, tokens) in enumerate(raw)]
    memory = ConversationMemory(budget, low_water=low_water)
    for m in messages:
        memory.update_memory(m.role, m.content, m.tokens, seq=m.seq)
        memory.turn_seq = m.seq  # as the pipeline does after each turn
        replayed = ConversationMemory(budget, [w for w in messages if memory.window_start <= w.seq <= m.seq],
                                      turn_seq=m.seq, low_water=low_water)
        assert replayed.to_json() == memory.to_json()


# ---------------------------------------------------------------- sizes the model counted


def test_measure_last_learns_the_overhead_then_sizes_each_new_message():
    memory = ConversationMemory(1000)
    memory.update_memory("user", "hello", tokens=2)
    assert memory.measure_last(prompt_tokens=30, prompt_key="sys") == 2  # first sight: 28 is system + framing
    memory.update_memory("assistant", "hi there", tokens=5)
    memory.update_memory("user", "how are you today?", tokens=5)
    assert memory.measure_last(prompt_tokens=47, prompt_key="sys") == 47 - 28 - (2 + 5)
    assert [m.tokens for m in memory.messages] == [2, 5, 12] and memory.total_tokens == 19
    assert ConversationMemory.from_json(memory.to_json()) == memory  # the overhead travels with the window


def test_a_new_system_prompt_is_learnt_again():
    memory = ConversationMemory(1000, prompt_overhead=28, overhead_key="old")
    memory.update_memory("user", "hello", tokens=2)
    assert memory.measure_last(prompt_tokens=50, prompt_key="new") == 2
    assert (memory.prompt_overhead, memory.overhead_key) == (48, "new")


def test_a_count_below_what_is_known_keeps_the_estimate():
    memory = ConversationMemory(1000, prompt_overhead=28, overhead_key="sys")
    memory.update_memory("user", "hello", tokens=2)
    assert memory.measure_last(prompt_tokens=0, prompt_key="sys") == 2  # a provider that reports no usage


def test_a_measured_message_that_no_longer_fits_drops_the_oldest_turn():
    memory = ConversationMemory(20, prompt_overhead=10, overhead_key="sys", low_water=1.0)
    for role, tokens in (("user", 6), ("assistant", 6), ("user", 4)):
        memory.update_memory(role, role, tokens=tokens)
    assert memory.measure_last(prompt_tokens=10 + 12 + 9, prompt_key="sys") == 9
    assert [m.tokens for m in memory.messages] == [9] and memory.total_tokens == 9
