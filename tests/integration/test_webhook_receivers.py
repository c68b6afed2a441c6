"""One webhook attempt against hostile receivers, over real sockets: where it connects,
how long it can be held, how much it reads, what it follows and which proxy it uses."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.receivers import (RawReceiver, Resolver, certificates, endless_body, header, status,
                                         trickled_body, trickled_status)
from worker.webhook_client import MAX_RESPONSE_BYTES, WebhookClient

DEADLINE = 0.5  # WEBHOOK_TIMEOUT_SECONDS for these attempts
HOST = "hooks.example.test"
BODY = b'{"id":"job"}'


def twin_receivers(make) -> tuple[RawReceiver, RawReceiver]:
    """Two receivers on one port: 127.0.0.2 (the address vetted) and 127.0.0.1 (where a rebinding
    DNS answer points next)."""
    for _ in range(20):
        vetted = make(status(204), host="127.0.0.2")
        try:
            return vetted, make(status(204), host="127.0.0.1", port=vetted.port)
        except OSError:  # that port is taken on 127.0.0.1; take another
            vetted.close()
    raise AssertionError("no port free on both loopback addresses")


def test_the_connection_goes_to_the_address_resolved_once(raw_receiver):
    vetted, internal = twin_receivers(raw_receiver)
    rebinding = Resolver(["127.0.0.2"], ["127.0.0.1"])
    client = WebhookClient(DEADLINE, allow_private=True, resolver=rebinding)

    attempt = client.post(f"http://{HOST}:{vetted.port}/hook", BODY, {})

    assert attempt.status_code == 204 and rebinding.lookups == 1
    (head, body), = vetted.requests
    assert header(head, "Host") == f"{HOST}:{vetted.port}" and body == BODY
    assert internal.requests == []


@pytest.mark.parametrize("answer", [["127.0.0.1"], ["0.0.0.0"], ["::ffff:127.0.0.1"], ["64:ff9b::7f00:1"],
                                    ["93.184.216.34", "127.0.0.1"]])
def test_a_host_resolving_to_a_private_address_is_refused(raw_receiver, answer):
    receiver = raw_receiver(status(204), host="0.0.0.0")  # 127.0.0.1, 0.0.0.0 and ::ffff:127.0.0.1 reach it
    resolver = Resolver(answer)

    attempt = WebhookClient(DEADLINE, resolver=resolver).post(f"http://{HOST}:{receiver.port}/hook", BODY, {})

    assert attempt.permanent and attempt.error.startswith(f"refused: '{HOST}' resolves to a non-public address")
    assert receiver.requests == [] and resolver.lookups == 1


@pytest.mark.parametrize("answer,outcome", [
    (trickled_status(), (None, f"no response within the {DEADLINE:g} s deadline")),
    (trickled_body(), (200, None)),  # the status arrived in time; the body is not waited for
])
def test_a_trickling_receiver_is_cut_at_the_deadline_and_the_thread_is_free(raw_receiver, answer, outcome):
    slow, prompt = raw_receiver(answer), raw_receiver(status(204))
    client = WebhookClient(DEADLINE, allow_private=True)
    with ThreadPoolExecutor(max_workers=1) as deliveries:  # one delivery thread, as if the pool were full
        first = deliveries.submit(client.post, f"http://127.0.0.1:{slow.port}/hook", BODY, {})
        second = deliveries.submit(client.post, f"http://127.0.0.1:{prompt.port}/hook", BODY, {})
        assert (first.result().status_code, first.result().error) == outcome
        assert second.result().status_code == 204
    assert slow.dropped.wait(5), "the connection was closed while the receiver was still trickling"


def test_a_slow_dns_answer_ends_at_the_deadline(raw_receiver):
    answered = threading.Event()

    def stalling(host: str, port: int) -> list[str]:
        answered.wait(30)
        return ["127.0.0.1"]

    try:
        attempt = WebhookClient(DEADLINE, resolver=stalling).post(f"http://{HOST}/hook", BODY, {})
    finally:
        answered.set()
    assert attempt.error == f"resolving '{HOST}' took longer than the {DEADLINE:g} s deadline"
    assert not attempt.permanent


def test_redirects_are_not_followed(raw_receiver):
    elsewhere = raw_receiver(status(204))
    redirecting = raw_receiver(status(307, b"Location: http://127.0.0.1:%d/steal" % elsewhere.port))

    attempt = WebhookClient(DEADLINE, allow_private=True).post(f"http://127.0.0.1:{redirecting.port}/", BODY, {})

    assert (attempt.status_code, attempt.error, attempt.ok) == (307, "redirect not followed", False)
    assert elsewhere.requests == []


def test_the_body_read_is_capped(raw_receiver):
    """The caller stops after MAX_RESPONSE_BYTES; the receiver could not send its whole body."""
    offered = 64 * MAX_RESPONSE_BYTES
    receiver = raw_receiver(endless_body(offered))
    attempt = WebhookClient(DEADLINE, allow_private=True).post(f"http://127.0.0.1:{receiver.port}/", BODY, {})
    assert attempt.status_code == 200
    assert receiver.dropped.wait(5) and receiver.sent < offered


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def test_proxy_variables_in_the_environment_are_ignored(raw_receiver, monkeypatch):
    proxy, receiver = raw_receiver(status(204)), raw_receiver(status(204))
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")

    attempt = WebhookClient(DEADLINE, allow_private=True).post(f"http://127.0.0.1:{receiver.port}/hook", BODY, {})

    assert attempt.status_code == 204 and len(receiver.requests) == 1 and proxy.requests == []


def test_a_configured_proxy_is_used_with_the_vetted_address(raw_receiver):
    proxy = raw_receiver(status(204))
    client = WebhookClient(DEADLINE, allow_private=True, proxy_url=f"http://127.0.0.1:{proxy.port}",
                           resolver=Resolver(["127.0.0.2"]))

    assert client.post(f"http://{HOST}:8080/hook?x=1", BODY, {}).status_code == 204

    (head, body), = proxy.requests
    assert head.split(b"\r\n")[0] == b"POST http://127.0.0.2:8080/hook?x=1 HTTP/1.1"
    assert header(head, "Host") == f"{HOST}:8080" and body == BODY


def test_tls_names_the_original_host(raw_receiver, tmp_path):
    server_tls, trusted = certificates(tmp_path, HOST)
    names: list[str | None] = []
    server_tls.sni_callback = lambda connection, name, context: names.append(name)
    receiver = raw_receiver(status(204), tls=server_tls)
    client = WebhookClient(DEADLINE, resolver=Resolver(["127.0.0.1"]), allow_private=True, ssl_context=trusted)

    assert client.post(f"https://{HOST}:{receiver.port}/hook", BODY, {}).status_code == 204
    assert names == [HOST] and header(receiver.requests[0][0], "Host") == f"{HOST}:{receiver.port}"

    # The same address under another name: its certificate does not match, nothing is sent.
    mismatch = client.post(f"https://other.example.test:{receiver.port}/hook", BODY, {})
    assert mismatch.status_code is None and "certificate verify failed" in mismatch.error
    assert len(receiver.requests) == 1


def test_an_unreachable_address_is_skipped_for_the_next(raw_receiver):
    live = raw_receiver(status(204), host="127.0.0.1")  # nothing listens on 127.0.0.2 at that port
    client = WebhookClient(DEADLINE, allow_private=True, resolver=Resolver(["127.0.0.2", "127.0.0.1"]))

    assert client.post(f"http://{HOST}:{live.port}/hook", BODY, {}).status_code == 204
    assert len(live.requests) == 1
