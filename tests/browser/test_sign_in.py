"""Signing in with a key pasted into the page, and out again."""
from __future__ import annotations

import pytest

pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed "
                    "(pip install -r requirements-dev.txt)")
from playwright.sync_api import expect  # noqa: E402

from tests.browser.conftest import key_of, sign_in


def test_a_bad_key_is_refused_plainly_and_a_good_one_is_kept_in_the_tab_only(page, alice):
    page.get_by_label("API key").fill("pk_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert").first).to_contain_text("That key was not accepted")
    expect(page.get_by_role("button", name="New conversation")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0

    sign_in(page, alice)
    expect(page.get_by_role("button", name="New conversation")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('parley.apiKey')") == key_of(alice)
    assert key_of(alice) not in page.url
    assert page.evaluate("document.cookie") == ""
    page.reload()  # the tab keeps it
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    page.reload()  # and forgets it
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.errors == []
