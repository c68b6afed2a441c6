"""Which addresses a webhook may connect to: public ones only, whatever their spelling."""
from __future__ import annotations

import pytest

from shared.webhooks import address_problem, refused_addresses

REFUSED = {
    "127.0.0.1": "loopback", "0.0.0.0": "this host (reaches loopback on Linux)", "10.1.2.3": "private",
    "172.16.0.1": "private", "192.168.0.10": "private", "169.254.169.254": "cloud metadata (link-local)",
    "100.64.0.1": "carrier-grade NAT", "192.0.0.9": "IETF protocol assignments", "192.0.2.1": "documentation",
    "198.18.0.1": "benchmarking", "224.0.0.251": "multicast", "240.0.0.1": "reserved",
    "255.255.255.255": "broadcast", "::1": "loopback", "::": "unspecified", "fe80::1%eth0": "link-local",
    "fc00::1": "unique local", "ff02::1": "multicast", "ff0e::1": "global-scope multicast",
    "2001:db8::1": "documentation",
    "::ffff:127.0.0.1": "IPv4-mapped loopback", "::ffff:8.8.8.8": "IPv4-mapped, even of a public address",
    "::127.0.0.1": "IPv4-compatible", "64:ff9b::a9fe:a9fe": "NAT64 of the metadata address",
    "64:ff9b::808:808": "NAT64", "64:ff9b:1::1": "local-use NAT64", "2002:7f00:1::1": "6to4 of loopback",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "Teredo",
}
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "2a00:1450:4001:82a::200e"]


@pytest.mark.parametrize("address", REFUSED, ids=lambda a: f"{a} ({REFUSED[a]})")
def test_non_public_addresses_are_refused(address):
    assert address_problem(address) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address):
    assert address_problem(address) is None


def test_one_private_answer_among_public_ones_refuses_the_host():
    refusal = refused_addresses("hooks.example.com", ["93.184.216.34", "10.0.0.5"])
    assert refusal == "'hooks.example.com' resolves to a non-public address: 10.0.0.5 is not a public address"
    assert refused_addresses("hooks.example.com", ["93.184.216.34", "2606:4700:4700::1111"]) is None


def test_a_host_with_no_address_is_refused():
    assert refused_addresses("hooks.example.com", []) == "'hooks.example.com' resolves to no address"
