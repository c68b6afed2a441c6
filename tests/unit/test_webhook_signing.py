"""Webhook signing and the private-address guard."""
from __future__ import annotations

import hashlib
import hmac

import pytest

from shared.webhooks import blocked_address, sign, url_problem


def test_signature_is_hmac_sha256_over_timestamp_and_body():
    expected = hmac.new(b"whsec_test", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert sign("whsec_test", "1700000000", b'{"a":1}') == "v1=" + expected
    assert sign("whsec_test", "1700000001", b'{"a":1}') != sign("whsec_test", "1700000000", b'{"a":1}')


@pytest.mark.parametrize("url", ["http://127.0.0.1/x", "http://10.1.2.3/", "http://[::1]:8080/",
                                 "http://169.254.169.254/latest/meta-data", "http://192.168.0.10/"])
def test_private_and_metadata_addresses_are_refused(url):
    assert "non-public" in blocked_address(url)


def test_public_address_is_allowed():
    assert blocked_address("https://93.184.216.34/hook") is None


@pytest.mark.parametrize("url,problem", [("https://example.com/hook", None), ("ftp://x/", "absolute http"),
                                         ("https://" + "a" * 3000, "longer than")])
def test_url_problem(url, problem):
    found = url_problem(url)
    assert (found is None) if problem is None else (problem in found)
