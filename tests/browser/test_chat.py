"""Chatting in the page: the streamed reply, a dropped stream, stop, errors, hostile Markdown."""
from __future__ import annotations

import re

import pytest

pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed "
                    "(pip install -r requirements-dev.txt)")
from playwright.sync_api import expect  # noqa: E402

from tests.browser.conftest import sign_in
from tests.browser.helpers import (conversation_id_of, job_id_of, last_reply, open_new_conversation,
                                   record_reply_text, resumed_after, send, stored, wait_for_partial_text,
                                   wait_state)


def test_a_new_conversation_streams_its_reply_and_the_page_shows_what_was_stored(page, client, alice, model):
    model(chunk_chars=3, stream_delay_ms=800)
    sign_in(page, alice)
    open_new_conversation(page, "Lisbon", system="Answer briefly.", model="claude-haiku-4-5")
    conversation_id = conversation_id_of(page)
    assert stored(client, alice, conversation_id)["system"] == "Answer briefly."
    expect(page.locator("#chat-meta")).to_contain_text("claude-haiku-4-5")

    record_reply_text(page)
    box = page.get_by_role("textbox", name="Message")
    box.fill("Plan a day")
    box.press("Shift+Enter")  # a new line, not a send
    box.press_sequentially("in Lisbon")
    expect(box).to_have_value("Plan a day\nin Lisbon")
    box.press("Enter")
    reply = last_reply(page)
    wait_state(reply, "done")

    conversation = stored(client, alice, conversation_id)
    user, assistant = conversation["messages"]
    assert user["content"] == "Plan a day\nin Lisbon"
    assert reply.locator(".body").inner_text() == assistant["content"]  # no markup in this reply
    shown = page.evaluate("window.shown")  # it grew piece by piece, each a start of the whole
    assert len(shown) > 5 and all(assistant["content"].startswith(text) for text in shown), shown
    expect(reply.locator(".foot")).to_contain_text(re.compile(r"Tokens: \d+ in · \d+ out · \d+ cache reads"))
    expect(page.locator("#chat-meta")).to_contain_text("2 messages")

    page.reload()  # the stored history shows the same text
    expect(last_reply(page).locator(".body")).to_have_text(assistant["content"], use_inner_text=True)
    assert page.errors == []


def test_a_dropped_stream_resumes_without_losing_or_repeating_text(page, client, web, alice, model):
    model(chunk_chars=2, stream_delay_ms=2500)
    sign_in(page, alice)
    open_new_conversation(page, "Flaky network")
    send(page, "Tell me something long enough to drop the line halfway through")
    reply = last_reply(page)
    wait_for_partial_text(page)  # some text, not all
    assert web.cut() > 0
    wait_state(reply, "done")

    assistant = stored(client, alice, conversation_id_of(page))["messages"][1]["content"]
    assert reply.locator(".body").inner_text() == assistant
    resumes = resumed_after(bytes(web.sent), job_id_of(reply))
    assert resumes and resumes[0] > 2, f"no resume with Last-Event-ID past the first deltas: {resumes}"
    assert page.errors == []


def test_a_reply_goes_on_while_another_conversation_is_open(page, client, alice, model):
    model(chunk_chars=2, stream_delay_ms=2000)
    sign_in(page, alice)
    open_new_conversation(page, "Background")
    background = conversation_id_of(page)
    send(page, "Keep writing while I look elsewhere")
    wait_for_partial_text(page)
    open_new_conversation(page, "Foreground")
    expect(page.locator("#messages")).to_contain_text("No messages yet")

    page.locator("#conversation-list .conversation", has_text="Background").click()
    reply = last_reply(page)
    expect(page.locator("#messages li.message")).to_have_count(2)  # never shown twice
    wait_state(reply, "done")
    assert reply.locator(".body").inner_text() == stored(client, alice, background)["messages"][1]["content"]
    assert page.errors == []


def test_stop_and_escape_cancel_the_reply_and_keep_nothing(page, client, alice, model):
    model(chunk_chars=2, stream_delay_ms=6000)
    sign_in(page, alice)
    open_new_conversation(page, "Stopped")
    conversation_id = conversation_id_of(page)

    send(page, "A reply I will not wait for")
    reply = last_reply(page)
    wait_for_partial_text(page)
    send(page, "And one more behind it")  # the conversation is busy: this one waits its turn
    waiting = last_reply(page)
    expect(waiting.locator(".foot")).to_have_text("Queued behind 1 earlier message(s)")
    expect(page.get_by_role("status")).to_contain_text("1 message(s) waiting")
    page.get_by_role("button", name="Stop", exact=True).click()  # stops both
    wait_state(reply, "cancelled")
    wait_state(waiting, "cancelled")
    for job in (reply, waiting):
        assert client.get(f"/v1/jobs/{job_id_of(job)}", headers=alice).get_json()["status"] == "cancelled"

    send(page, "And this one with Esc")
    reply = last_reply(page)
    wait_for_partial_text(page)
    page.keyboard.press("Escape")
    wait_state(reply, "cancelled")
    expect(reply.locator(".foot")).to_contain_text("Stopped")
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_hidden()
    assert stored(client, alice, conversation_id)["message_count"] == 0
    assert page.errors == []


def test_a_failed_job_shows_its_error_type_and_message(page, alice, model):
    model(faults=["invalid_request"])
    sign_in(page, alice)
    open_new_conversation(page, "Doomed")
    send(page, "This one fails")
    reply = last_reply(page)
    wait_state(reply, "failed")
    expect(reply.get_by_role("alert")).to_contain_text("invalid_request")
    assert page.errors == []


HOSTILE = "\n".join([
    "<script>window.pwned = 'script'</script>",
    '<img src="x" onerror="window.pwned = \'img\'">',
    "[a link](javascript:window.pwned='link') and <a href=\"javascript:alert(1)\">raw</a>",
    '<svg onload="window.pwned = \'svg\'"></svg> <iframe src="javascript:alert(2)"></iframe>',
    "![pic](javascript:alert(3)) <b onmouseover=\"window.pwned='b'\">bold?</b>",
    "**bold** and `inline <i>code</i>` and [safe](https://example.org/?a=1&b=<x>)",
    "```html",
    "<script>window.pwned = 'code'</script>",
    "```",
])


def test_hostile_markdown_in_a_reply_injects_nothing(page, context, alice):
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.add_init_script("window.violations = [];"
                         "document.addEventListener('securitypolicyviolation', e => window.violations.push(e.violatedDirective));")
    page.reload()
    sign_in(page, alice)
    open_new_conversation(page, "Hostile")
    send(page, HOSTILE)  # the offline model's reply quotes it
    reply = last_reply(page)
    wait_state(reply, "done")
    body = reply.locator(".body")
    body.hover()  # would fire an injected mouseover handler
    expect(body).to_contain_text("<script>window.pwned = 'script'</script>")  # shown as text

    assert page.evaluate("window.pwned") is None
    assert page.evaluate("window.violations") == []
    handlers = page.evaluate("""() => [...document.querySelectorAll('*')].flatMap(el =>
        [...el.attributes].filter(a => a.name.startsWith('on')).map(a => el.tagName + ' ' + a.name))""")
    assert handlers == []
    for tag in ("script", "img", "svg", "iframe", "b", "i"):
        assert body.locator(tag).count() == 0, tag
    hrefs = body.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert hrefs == ["https://example.org/?a=1&b=%3Cx%3E"]
    expect(body.locator("strong")).to_have_text("bold")
    expect(body.locator("p code")).to_have_text("inline <i>code</i>")

    reply.get_by_role("button", name="Copy html block").click()
    expect(reply.get_by_role("button", name="Copy html block")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "<script>window.pwned = 'code'</script>"
    assert page.errors == []


def test_a_refused_reply_says_so_and_the_next_message_is_answered(page, alice, model):
    from offline_model.wire import REFUSAL_TRIGGER

    model(chunk_chars=8, stream_delay_ms=0)
    sign_in(page, alice)
    open_new_conversation(page, "Refusal")
    send(page, f"Do the bad thing. {REFUSAL_TRIGGER}")
    refused = last_reply(page)
    wait_state(refused, "refused")
    expect(refused.locator(".foot")).to_contain_text("not sent to Claude again")
    expect(refused.locator(".foot")).to_have_attribute("role", "alert")
    send(page, "Something harmless")
    answered = last_reply(page)
    wait_state(answered, "done")
    expect(answered.locator(".body")).to_contain_text("received 1 messages")  # the refused turn was left out
    assert page.errors == []
