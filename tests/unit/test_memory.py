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


def longest_fitting_suffix(messages: list[Message], budget: int) -> list[Message]:
    total, start = 0, len(messages)
    for i in range(len(messages) - 1, -1, -1):
        if total + messages[i].tokens > budget:
            break
        total += messages[i].tokens
        start = i
    return messages[start:]


# ---------------------------------------------------------------- examples


def test_window_keeps_newest_messages_within_budget():
    msgs = conversation(4, 4, 4, 4)  # u0 a1 u2 a3
    memory = feed(ConversationMemory(10), msgs)
    assert memory.messages == msgs[2:]
    assert memory.total_tokens == 8
    assert memory.get_current_context() == [
        {"role": "user", "content": "u2"},
        {"role": "assistant", "content": "a3"},
    ]


def test_window_that_fits_keeps_everything():
    msgs = conversation(1, 2, 3, 4)
    memory = feed(ConversationMemory(10), msgs)
    assert memory.messages == msgs
    assert memory.total_tokens == 10


def test_never_cuts_a_message():
    long_text = "word " * 200
    memory = ConversationMemory(100)
    memory.update_memory("user", "first question", tokens=10)
    memory.update_memory("assistant", long_text, tokens=60)
    memory.update_memory("user", "follow-up", tokens=35)
    # 10 + 60 + 35 > 100: the oldest whole message goes, the long one stays intact.
    assert [m.content for m in memory.messages] == [long_text, "follow-up"]
    context = memory.get_current_context()
    assert context == [{"role": "user", "content": "follow-up"}]
    for item in context:
        assert item["content"] in {"first question", long_text, "follow-up"}


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


def test_context_starts_with_user_when_window_starts_with_assistant():
    msgs = conversation(4, 4, 4, 4)  # u0 a1 u2 a3
    memory = feed(ConversationMemory(12), msgs)
    assert memory.messages[0].role == "assistant"  # the trimmed window is a1 u2 a3
    context = memory.get_current_context()
    assert context[0]["role"] == "user"
    assert context == [
        {"role": "user", "content": "u2"},
        {"role": "assistant", "content": "a3"},
    ]


def test_window_of_only_an_assistant_message_gives_empty_context():
    memory = feed(ConversationMemory(5), conversation(4, 4))
    assert [m.role for m in memory.messages] == ["assistant"]
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


@PROPS
@given(turns=turns_strategy, trailing=trailing_strategy, budget=budgets)
def test_property_window_fits_the_budget(turns, trailing, budget):
    memory = feed(ConversationMemory(budget), build_messages(turns, trailing))
    assert sum(m.tokens for m in memory.messages) <= budget
    assert memory.total_tokens == sum(m.tokens for m in memory.messages)


@PROPS
@given(turns=turns_strategy, trailing=trailing_strategy, budget=budgets)
def test_property_window_is_the_longest_fitting_suffix(turns, trailing, budget):
    messages = build_messages(turns, trailing)
    memory = ConversationMemory(budget)
    for i, m in enumerate(messages):
        memory.update_memory(m.role, m.content, tokens=m.tokens)
        # The invariant holds after every single update, not only at the end.
        assert memory.messages == longest_fitting_suffix(messages[: i + 1], budget)


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

    suffix = longest_fitting_suffix(messages, budget)
    while suffix and suffix[0].role == "assistant":
        suffix = suffix[1:]
    assert context == [{"role": m.role, "content": m.content} for m in suffix]


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


@PROPS
@given(turns=turns_strategy, trailing=trailing_strategy, budget=budgets)
def test_property_incremental_equals_rebuilt(turns, trailing, budget):
    messages = build_messages(turns, trailing)
    incremental = feed(ConversationMemory(budget), messages)
    rebuilt_from_all = ConversationMemory(budget, messages=messages)
    rebuilt_from_window = ConversationMemory(budget, messages=longest_fitting_suffix(messages, budget))
    fed_window_only = feed(ConversationMemory(budget), longest_fitting_suffix(messages, budget))

    assert rebuilt_from_all.to_json() == incremental.to_json()
    assert rebuilt_from_window.to_json() == incremental.to_json()
    assert fed_window_only.to_json() == incremental.to_json()
    assert rebuilt_from_all.get_current_context() == incremental.get_current_context()


# ------------------------------------------------ any sequence of messages

roles = st.sampled_from(["user", "assistant"])
any_messages = st.lists(st.tuples(roles, texts, st.integers(min_value=0, max_value=60)), max_size=25)


def merged(messages: list[Message]) -> list[dict]:
    """What the Messages API gets: leading assistant messages dropped, runs of one role joined."""
    while messages and messages[0].role == "assistant":
        messages = messages[1:]
    context: list[dict] = []
    for m in messages:
        if context and context[-1]["role"] == m.role:
            context[-1] = {"role": m.role, "content": context[-1]["content"] + "\n\n" + m.content}
        else:
            context.append({"role": m.role, "content": m.content})
    return context


@PROPS
@given(raw=any_messages, budget=budgets)
def test_property_any_sequence_gives_the_newest_fitting_suffix_as_a_valid_window(raw, budget):
    """Roles in any order (a reply failed, a turn was cancelled), zero-token and
    over-budget messages: after every update the window is the newest suffix that
    fits, and its context is valid for the Messages API."""
    messages = [Message(role, f"{i}:{text}", tokens) for i, (role, text, tokens) in enumerate(raw)]
    memory = ConversationMemory(budget)
    for i, m in enumerate(messages):
        memory.update_memory(m.role, m.content, tokens=m.tokens)
        suffix = longest_fitting_suffix(messages[: i + 1], budget)
        assert memory.messages == suffix
        assert memory.total_tokens == sum(s.tokens for s in suffix) <= budget
        context = memory.get_current_context()
        assert context == merged(suffix)
        roles_ = [item["role"] for item in context]
        assert roles_[:1] in ([], ["user"])
        assert all(a != b for a, b in zip(roles_, roles_[1:]))
        if m.role == "user" and suffix:  # what the pipeline sends ends with the new user message
            assert context[-1]["role"] == "user" and context[-1]["content"].endswith(m.content)


@PROPS
@given(raw=any_messages, budget=budgets, data=st.data())
def test_property_replaying_any_suffix_that_holds_the_window_rebuilds_it(raw, budget, data):
    """worker.window.rebuild_window replays only the newest turns (up to one that
    does not fit): any suffix of the history holding the window rebuilds it exactly,
    for any budget (a changed MAX_CONTEXT_TOKENS rebuilds too)."""
    messages = [Message(role, f"{i}:{text}", tokens) for i, (role, text, tokens) in enumerate(raw)]
    window = longest_fitting_suffix(messages, budget)
    start = data.draw(st.integers(min_value=0, max_value=len(messages) - len(window)), label="start")
    replayed = ConversationMemory(budget, messages=messages[start:], turn_seq=7)
    assert replayed.to_json() == feed(ConversationMemory(budget, turn_seq=7), messages).to_json()


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


def test_a_measured_message_that_no_longer_fits_drops_the_oldest():
    memory = ConversationMemory(20, prompt_overhead=10, overhead_key="sys")
    for role, tokens in (("user", 6), ("assistant", 6), ("user", 4)):
        memory.update_memory(role, role, tokens=tokens)
    assert memory.measure_last(prompt_tokens=10 + 12 + 9, prompt_key="sys") == 9
    assert [m.tokens for m in memory.messages] == [6, 9] and memory.total_tokens == 15
