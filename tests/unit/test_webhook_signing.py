"""Webhook signing and callback URL checks (addresses: test_webhook_addresses.py)."""
from __future__ import annotations

import hashlib
import hmac

import pytest

from shared.webhooks import sign, url_problem


def test_signature_is_hmac_sha256_over_timestamp_and_body():
    expected = hmac.new(b"whsec_test", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert sign("whsec_test", "1700000000", b'{"a":1}') == "v1=" + expected
    assert sign("whsec_test", "1700000001", b'{"a":1}') != sign("whsec_test", "1700000000", b'{"a":1}')


@pytest.mark.parametrize("url,problem", [("https://example.com/hook", None), ("ftp://x/", "absolute http"),
                                         ("https://" + "a" * 3000, "longer than")])
def test_url_problem(url, problem):
    found = url_problem(url)
    assert (found is None) if problem is None else (problem in found)
