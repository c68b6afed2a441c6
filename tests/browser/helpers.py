"""What the browser tests do through the API beside the page: set up and check."""
from __future__ import annotations

import re

from playwright.sync_api import Page, expect


def create_conversation(client, headers: dict, name: str) -> str:
    response = client.post("/v1/conversations", json={"name": name}, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def stored(client, headers: dict, conversation_id: str) -> dict:
    response = client.get(f"/v1/conversations/{conversation_id}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def open_new_conversation(page: Page, name: str, system: str = "", model: str | None = None) -> None:
    page.get_by_role("button", name="New conversation").click()
    dialog = page.get_by_role("dialog", name="New conversation")
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("System prompt").fill(system)
    if model:
        dialog.get_by_label("Model").select_option(model)
    dialog.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()


def send(page: Page, text: str) -> None:
    box = page.get_by_role("textbox", name="Message")
    box.fill(text)
    box.press("Enter")
    expect(box).to_have_value("")  # sent


def last_reply(page: Page):
    return page.locator("#messages li.message.assistant").last


def wait_for_partial_text(page: Page) -> None:
    """Until the newest reply shows its first words; polled every 50 ms (expect's polling
    slows to once a second, which could miss a reply still being written)."""
    page.wait_for_function("""() => {
        const replies = document.querySelectorAll('#messages li.message.assistant');
        const last = replies[replies.length - 1];
        return last && last.dataset.state === 'streaming' && last.querySelector('.body').textContent.includes('offline');
    }""", polling=50)


def record_reply_text(page: Page) -> None:
    """From now on, every text the newest reply shows is kept in `window.shown`."""
    page.evaluate("""() => {
        window.shown = [];
        new MutationObserver(() => {
            const replies = document.querySelectorAll('#messages li.message.assistant');
            const body = replies.length && replies[replies.length - 1].querySelector('.body');
            if (body && body.innerText !== window.shown[window.shown.length - 1]) window.shown.push(body.innerText);
        }).observe(document.getElementById('messages'), {childList: true, subtree: true, characterData: true});
    }""")


def wait_state(reply, state: str, timeout: float = 20_000) -> None:
    expect(reply).to_have_attribute("data-state", state, timeout=timeout)


def job_id_of(reply) -> str:
    return reply.get_attribute("data-job")


def conversation_id_of(page: Page) -> str:
    current = page.locator("#conversation-list button[aria-current=true]")
    return current.get_attribute("data-id")


def resumed_after(sent: bytes, job_id: str) -> list[int]:
    """Last-Event-ID values of the event-stream requests the browser made for `job_id`."""
    heads = re.split(rb"\r\n\r\n", sent)
    return [int(m.group(1)) for head in heads if f"/v1/jobs/{job_id}/events".encode() in head
            for m in [re.search(rb"(?im)^last-event-id:\s*(\d+)", head)] if m]
