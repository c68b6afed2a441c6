"""The conversation list in the page: newest first, paged, rename, delete, and one user's
page never showing another's conversations."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed "
                    "(pip install -r requirements-dev.txt)")
from playwright.sync_api import expect  # noqa: E402

from tests.browser.conftest import sign_in
from tests.browser.helpers import create_conversation, last_reply, open_new_conversation, send, stored, wait_state

ROOT = Path(__file__).resolve().parents[2]


def names(page) -> list[str]:
    return page.locator("#conversation-list .conversation .name").all_inner_texts()


def test_list_is_newest_first_and_paged_and_rename_and_delete_work(page, client, make_user):
    user = make_user()
    ids = [create_conversation(client, user, f"Topic {n:02d}") for n in range(22)]
    sign_in(page, user)
    expect(page.locator("#conversation-list .conversation")).to_have_count(20)
    assert names(page)[:2] == ["Topic 21", "Topic 20"]
    page.get_by_role("button", name="Load more").click()
    expect(page.locator("#conversation-list .conversation")).to_have_count(22)
    assert names(page) == [f"Topic {n:02d}" for n in reversed(range(22))]
    expect(page.get_by_role("button", name="Load more")).to_be_hidden()

    page.locator("#conversation-list .conversation", has_text="Topic 03").click()
    expect(page.get_by_role("heading", name="Topic 03")).to_be_visible()
    page.get_by_role("button", name="Edit").click()
    dialog = page.get_by_role("dialog", name="Edit conversation")
    dialog.get_by_label("Name").fill("Renamed topic")
    dialog.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="Renamed topic")).to_be_visible()
    expect(page.locator("#conversation-list")).to_contain_text("Renamed topic")
    assert stored(client, user, ids[3])["name"] == "Renamed topic"

    page.get_by_role("button", name="Delete").click()
    confirm = page.get_by_role("dialog", name="Delete this conversation?")
    expect(confirm).to_contain_text("Renamed topic")
    confirm.get_by_role("button", name="Cancel").click()  # a change of mind keeps it
    assert client.get(f"/v1/conversations/{ids[3]}", headers=user).status_code == 200
    page.get_by_role("button", name="Delete").click()
    confirm.get_by_role("button", name="Delete").click()
    expect(page.locator("#conversation-list")).not_to_contain_text("Renamed topic")
    assert client.get(f"/v1/conversations/{ids[3]}", headers=user).status_code == 404
    assert page.errors == []


def test_a_long_conversation_opens_at_its_newest_page_and_shows_earlier_ones_on_demand(page, client, alice):
    conversation_id = create_conversation(client, alice, "Long one")
    for n in range(26):  # 52 messages: one page of 50 and two more
        job = client.post(f"/v1/conversations/{conversation_id}/messages", json={"content": f"note {n}"},
                          headers=alice).get_json()["job"]
        assert client.get(f"/v1/jobs/{job['id']}?wait=30", headers=alice).get_json()["status"] == "succeeded"
    sign_in(page, alice)
    messages = page.locator("#messages li.message")
    expect(messages).to_have_count(50)
    expect(messages.first).to_contain_text("note 1")  # the user message of turn 2
    page.get_by_role("button", name="Show earlier messages").click()
    expect(messages).to_have_count(52)
    expect(messages.first.locator(".body")).to_have_text("note 0")
    expect(page.get_by_role("button", name="Show earlier messages")).to_have_count(0)


def test_two_users_never_see_each_others_conversations(browser, web, client, make_user):
    alice, bob = make_user(), make_user()
    create_conversation(client, alice, "Alice's secret plans")
    create_conversation(client, bob, "Bob's shopping list")
    pages = {}
    for name, headers in (("alice", alice), ("bob", bob)):
        pages[name] = browser.new_context().new_page()
        pages[name].goto(web.url)
        sign_in(pages[name], headers)
    expect(pages["alice"].locator("#conversation-list")).to_contain_text("Alice's secret plans")
    expect(pages["bob"].locator("#conversation-list")).to_contain_text("Bob's shopping list")
    assert "Bob" not in pages["alice"].locator("#workspace").inner_text()
    assert "Alice" not in pages["bob"].locator("#workspace").inner_text()

    # One shared tab: signing out leaves nothing of Alice's behind for Bob.
    shared = pages["alice"]
    shared.get_by_role("button", name="Sign out").click()
    sign_in(shared, bob)
    expect(shared.locator("#conversation-list")).to_contain_text("Bob's shopping list")
    assert "Alice" not in shared.content()
    for page in pages.values():
        page.context.close()


def test_phone_width_usage_panel_and_the_readme_screenshot(browser, web, client, make_user, tmp_path):
    user = make_user()
    phone = browser.new_context(viewport={"width": 390, "height": 800}, is_mobile=True, has_touch=True)
    page = phone.new_page()
    page.goto(web.url)
    sign_in(page, user)
    page.get_by_role("button", name="New conversation").click()
    page.get_by_role("dialog", name="New conversation").get_by_label("Name").fill("On the go")
    page.get_by_role("button", name="Create").click()
    send(page, "Packing list:\n- **passport**\n- `charger`")
    wait_state(last_reply(page), "done")
    expect(last_reply(page).locator("strong")).to_have_text("passport")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "scrolls sideways"
    toggle = page.get_by_role("button", name="Conversations")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(page.locator("#conversation-list")).to_contain_text("On the go")
    expect(page.get_by_role("textbox", name="Message")).to_be_hidden()

    page.get_by_role("button", name="Usage").click()
    usage = page.get_by_role("dialog", name="Usage, last 30 days (UTC)")
    expect(usage.get_by_role("row", name="Total")).to_contain_text("1")  # one turn so far
    usage.get_by_role("button", name="Close").click()
    phone.close()

    # The README's picture: a conversation at desktop width.
    desk = browser.new_context(viewport={"width": 1100, "height": 640})
    page = desk.new_page()
    page.goto(web.url)
    sign_in(page, user)
    open_new_conversation(page, "Streaming, explained", system="Answer briefly.")
    send(page, "Explain SSE resumption in **two** steps:\n1. Remember the last `id:`\n"
               "2. Reconnect with `Last-Event-ID`\n```sh\ncurl -N \"$B/v1/jobs/$J/events\" -H 'Last-Event-ID: 12'\n```")
    wait_state(last_reply(page), "done")
    expect(page.locator("#chat-meta")).to_contain_text("2 messages")
    shot = tmp_path / "chat-page.png"
    page.screenshot(path=shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("UPDATE_SCREENSHOT") == "1":  # refresh docs/chat-page.png for the README
        (ROOT / "docs").mkdir(exist_ok=True)
        (ROOT / "docs" / "chat-page.png").write_bytes(shot.read_bytes())
    desk.close()


def test_a_429_says_when_to_try_again(page):
    described = page.evaluate("""async () => {
        const { errorOf } = await import('/web/api.js');
        const response = new Response(JSON.stringify({error: {type: 'too_many_jobs', message: 'Wait for one.'}}),
                                      {status: 429, headers: {'Retry-After': '7'}});
        return (await errorOf(response)).describe();
    }""")
    assert described.startswith("too_many_jobs: Wait for one. Try again in 7 s (at ")
