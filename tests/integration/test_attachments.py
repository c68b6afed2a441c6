"""Attachments end to end: uploads judged by their bytes, files attached to messages that
reach the offline model as image and document blocks through the real SDK and boto3,
the window's estimate and the refusal at submit, the prompt cache after a document, and
what deleting a file or a conversation does to the other."""
from __future__ import annotations

import dataclasses
import io
import uuid

import pytest
import requests
from sqlalchemy import select

from api import create_app
from offline_model import OfflineModelServer
from shared.files import FileResolver, message_content, parse_file_id
from shared.media import image_tokens
from shared.model import AnthropicProvider, BedrockProvider, ModelRequest
from shared.models import File, User
from tests.integration.helpers import new_conversation, wait_job
from tests.media import CSV, pdf, png

MODELS = {"anthropic": "claude-sonnet-5-5", "bedrock": "global.anthropic.claude-sonnet-5-5"}


def upload(client, headers, name: str, data: bytes, content_type: str = "application/octet-stream"):
    return client.post("/v1/files", headers=headers, content_type="multipart/form-data",
                       data={"file": (io.BytesIO(data), name, content_type)})


def uploaded(client, headers, name: str, data: bytes) -> dict:
    response = upload(client, headers, name, data)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def send(client, headers, conversation_id: str, content: str, attachments: list[str]):
    return client.post(f"/v1/conversations/{conversation_id}/messages", headers=headers,
                       json={"content": content, "attachments": attachments})


def answered(client, headers, conversation_id: str, content: str, attachments: list[str]) -> dict:
    response = send(client, headers, conversation_id, content, attachments)
    assert response.status_code == 202, response.get_json()
    job = wait_job(client, headers, response.get_json()["job"]["id"])
    assert job["status"] == "succeeded", job
    return job


def last_request(stack) -> dict:
    return requests.get(f"{stack.model.url}/_requests", timeout=5).json()["requests"][-1]


def stored_keys(stack, user_name: str) -> list[str]:
    with stack.services.sessions() as session:
        user_id = session.scalar(select(User.id).where(User.name == user_name))
    return stack.services.store.list_keys(f"users/{user_id}/files/")


@pytest.fixture()
def named_user(make_user):
    name = f"files-{uuid.uuid4().hex[:8]}"
    return name, make_user(name)


def test_an_upload_is_judged_by_its_bytes_and_read_back(client, alice):
    image = png(40, 30)
    created = uploaded(client, alice, "chart.png", image)
    # The client's content type said text/plain: the bytes decide.
    again = upload(client, alice, "chart.png", image, content_type="text/plain").get_json()
    assert again["media_type"] == created["media_type"] == "image/png"
    assert (created["kind"], created["width"], created["height"], created["size_bytes"]) == ("image", 40, 30,
                                                                                               len(image))
    assert created["token_estimate"] == image_tokens(40, 30) and created["id"].startswith("file_")
    assert client.get(f"/v1/files/{created['id']}", headers=alice).get_json() == created
    content = client.get(f"/v1/files/{created['id']}/content", headers=alice)
    assert content.status_code == 200 and content.data == image and content.mimetype == "image/png"
    listed = client.get("/v1/files?limit=1", headers=alice).get_json()
    assert listed["data"] == [again] and listed["next_cursor"]
    rest = client.get(f"/v1/files?cursor={listed['next_cursor']}", headers=alice).get_json()
    assert [f["id"] for f in rest["data"]] == [created["id"]]
    document = uploaded(client, alice, "report.pdf", pdf(3))
    assert (document["media_type"], document["kind"], document["pages"]) == ("application/pdf", "document", 3)
    table = uploaded(client, alice, "visits.csv", CSV)
    assert (table["media_type"], table["kind"]) == ("text/csv", "document")


REFUSED = [
    ("lying extension", "photo.png", pdf(1), 415, "media_type_mismatch", "says image/png"),
    ("text named as an image", "notes.png", b"just words", 415, "media_type_mismatch", "UTF-8 text"),
    ("wrong magic bytes", "broken.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, 400, "corrupt_file", "image/png"),
    ("truncated image", "cut.png", png(60, 60)[:80], 400, "corrupt_file", "cannot be decoded"),
    ("corrupt pdf", "cut.pdf", pdf(2)[:120], 400, "corrupt_file", "PDF cannot be read"),
    ("zero bytes", "empty.txt", b"", 400, "empty_file", "0 bytes"),
    ("unsupported type", "archive.zip", b"PK\x03\x04" + b"\x00" * 64, 415, "unsupported_media_type",
     "application/zip"),
    ("binary junk", "blob.bin", bytes(range(256)) * 4, 415, "unsupported_media_type", "accepted: PNG"),
]


@pytest.mark.parametrize("name, data, status, kind, words", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_a_refused_upload_says_why_and_stores_nothing(client, stack, named_user, name, data, status, kind, words):
    user_name, headers = named_user
    response = upload(client, headers, name, data)
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert error["type"] == kind and words in error["message"], error
    assert client.get("/v1/files", headers=headers).get_json()["data"] == []
    assert stored_keys(stack, user_name) == []


@pytest.mark.parametrize("setting, value, name, data, kind, words", [
    ("max_image_bytes", 500, "big.png", png(300, 300), "file_too_large", "MAX_IMAGE_BYTES"),
    ("max_image_side_px", 100, "wide.png", png(101, 10), "image_too_large", "MAX_IMAGE_SIDE_PX"),
    ("max_pdf_pages", 2, "long.pdf", pdf(3), "too_many_pages", "MAX_PDF_PAGES"),
    ("max_text_file_bytes", 10, "visits.csv", CSV, "file_too_large", "MAX_TEXT_FILE_BYTES"),
])
def test_an_upload_past_its_kinds_limit_is_413_naming_it(stack, named_user, setting, value, name, data, kind, words):
    user_name, headers = named_user
    capped = stack.settings.model_copy(update={setting: value})
    client = create_app(capped, dataclasses.replace(stack.services, settings=capped)).test_client()
    response = upload(client, headers, name, data)
    assert response.status_code == 413 and response.get_json()["error"]["type"] == kind
    assert words in response.get_json()["error"]["message"] and f"{value:,}" in response.get_json()["error"]["message"]
    assert stored_keys(stack, user_name) == []


def test_an_upload_must_be_a_multipart_file(client, alice):
    response = client.post("/v1/files", headers=alice, json={"file": "aGVsbG8="})
    assert response.status_code == 400 and "multipart/form-data" in response.get_json()["error"]["message"]


def test_an_image_a_pdf_and_a_csv_reach_the_model_as_blocks(client, stack, alice):
    files = [uploaded(client, alice, "chart.png", png(40, 30)), uploaded(client, alice, "report.pdf", pdf(2)),
             uploaded(client, alice, "visits.csv", CSV)]
    conversation = new_conversation(client, alice)
    job = answered(client, alice, conversation, "What do these show?", [f["id"] for f in files])

    assert job["request"] == {"content": "What do these show?", "attachments": [f["id"] for f in files]}
    sent = last_request(stack)["messages"][-1]["content"]
    assert [b["type"] for b in sent] == ["image", "document", "document", "text"]
    assert [(b["source"]["type"], b["source"]["media_type"]) for b in sent[:3]] == [
        ("base64", "image/png"), ("base64", "application/pdf"), ("text", "text/plain")]
    assert sent[1]["title"] == "report.pdf" and sent[2]["source"]["data"] == CSV.decode()
    assert "cache_control" in sent[-1] and sent[-1]["text"] == "What do these show?"
    reply = job["reply"]["content"]
    assert (f"attachments: image image/png (40x30 px, {files[0]['size_bytes']} bytes, "
            f"~{files[0]['token_estimate']} tokens); document application/pdf (2 pages, ") in reply
    assert f"document text/plain ({len(CSV)} bytes, ~{files[2]['token_estimate']} tokens)" in reply

    history = client.get(f"/v1/conversations/{conversation}/messages?order=asc", headers=alice).get_json()["data"]
    question = history[0]["content"]
    assert [(b["type"], b.get("file_id"), b.get("name")) for b in question] == [
        ("image", files[0]["id"], "chart.png"), ("document", files[1]["id"], "report.pdf"),
        ("document", files[2]["id"], "visits.csv"), ("text", None, None)]
    assert "data" not in str(question)  # references only, never the bytes
    # Counted like any block: the model's input covers the attachments' estimates.
    estimate = sum(f["token_estimate"] for f in files)
    assert job["reply"]["usage"]["input_tokens"] + job["reply"]["usage"]["cache_read_input_tokens"] \
        + job["reply"]["usage"]["cache_creation_input_tokens"] > estimate


def test_a_plain_message_stays_a_string(client, alice):
    conversation = new_conversation(client, alice)
    job = answered(client, alice, conversation, "just text", [])
    assert job["request"] == {"content": "just text"}
    history = client.get(f"/v1/conversations/{conversation}/messages?order=asc", headers=alice).get_json()["data"]
    assert history[0]["content"] == "just text"


def test_attachments_that_cannot_fit_the_window_are_refused_at_submit(client, stack, alice):
    letter = uploaded(client, alice, "letter.pdf", pdf(1, 612, 792))  # ~1,150 tokens; the test window is 300
    conversation = new_conversation(client, alice)
    response = send(client, alice, conversation, "Summarize", [letter["id"]])
    assert response.status_code == 400 and response.get_json()["error"]["type"] == "context_too_long"
    assert f"{letter['token_estimate'] + 3:,} tokens" in response.get_json()["error"]["message"]
    assert client.get(f"/v1/conversations/{conversation}", headers=alice).get_json()["messages"] == []


def test_someone_elses_file_or_a_made_up_id_cannot_be_attached(client, alice, bob):
    hers = uploaded(client, alice, "dot.png", png(4, 4))
    conversation = new_conversation(client, bob)
    for file_id in (hers["id"], "file_" + "0" * 32):
        response = send(client, bob, conversation, "look", [file_id])
        assert response.status_code == 404 and file_id in response.get_json()["error"]["message"]
    response = send(client, bob, conversation, "look", ["not-a-file"])
    assert response.status_code == 400
    assert client.get(f"/v1/files/{hers['id']}", headers=bob).status_code == 404


def test_a_file_in_a_live_window_is_deleted_only_when_forced(client, stack, alice):
    image = uploaded(client, alice, "dot.png", png(6, 6))
    conversation = new_conversation(client, alice)
    answered(client, alice, conversation, "Here is a dot", [image["id"]])

    refused = client.delete(f"/v1/files/{image['id']}", headers=alice)
    assert refused.status_code == 409 and refused.get_json()["error"]["type"] == "file_in_use"
    assert conversation in refused.get_json()["error"]["message"]
    assert client.get(f"/v1/files/{image['id']}", headers=alice).status_code == 200

    assert client.delete(f"/v1/files/{image['id']}?force=true", headers=alice).status_code == 204
    assert client.get(f"/v1/files/{image['id']}", headers=alice).status_code == 404
    with stack.services.sessions() as session:
        assert session.get(File, parse_file_id(image["id"])) is None
    # The conversation goes on; the model is told the file is gone.
    answered(client, alice, conversation, "And now?", [])
    first = last_request(stack)["messages"][0]["content"]
    assert first[0] == {"type": "text", "text": f"[Attachment dot.png ({image['id']}) was deleted and is no longer "
                                                f"available.]"}


def test_an_unused_file_is_deleted_at_once(client, alice):
    image = uploaded(client, alice, "dot.png", png(5, 5))
    assert client.delete(f"/v1/files/{image['id']}", headers=alice).status_code == 204
    assert client.get(f"/v1/files/{image['id']}/content", headers=alice).status_code == 404


def test_deleting_a_conversation_keeps_a_file_another_one_sends(client, stack, alice):
    image = uploaded(client, alice, "shared.png", png(7, 7))
    first, second = new_conversation(client, alice), new_conversation(client, alice)
    answered(client, alice, first, "one", [image["id"]])
    answered(client, alice, second, "two", [image["id"]])
    assert client.delete(f"/v1/conversations/{first}", headers=alice).status_code == 204

    assert client.get(f"/v1/files/{image['id']}/content", headers=alice).status_code == 200
    refused = client.delete(f"/v1/files/{image['id']}", headers=alice)
    assert refused.status_code == 409 and second in refused.get_json()["error"]["message"]
    assert first not in refused.get_json()["error"]["message"]
    job = answered(client, alice, second, "still there?", [])
    assert job["status"] == "succeeded"
    assert last_request(stack)["messages"][0]["content"][0]["type"] == "image"


# -- both providers, through the SDK and boto3 ------------------------------------------


@pytest.fixture(scope="module")
def model():
    with OfflineModelServer() as running:  # its own: these tests read its requests and uploads
        yield running


def provider_for(kind: str, model, stack, monkeypatch, files_api: bool = False):
    resolver = FileResolver(stack.services.sessions, stack.services.store)
    if kind == "anthropic":
        return AnthropicProvider("offline", model.url, timeout=10, attachments=resolver, files_api=files_api)
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    return BedrockProvider("us-east-1", model.url, timeout=10, attachments=resolver)


def references(stack, files: list[dict]) -> list[dict]:
    """The content a stored user message holds with these files, as the pipeline makes it."""
    with stack.services.sessions() as session:
        rows = [session.get(File, parse_file_id(f["id"])) for f in files]
        return message_content("What do these show?", rows)


@pytest.mark.parametrize("kind", ["anthropic", "bedrock"])
def test_both_providers_send_each_kind_as_its_block(kind, client, stack, alice, model, monkeypatch):
    files = [uploaded(client, alice, "chart.png", png(40, 30)), uploaded(client, alice, "q3 report.pdf", pdf(2)),
             uploaded(client, alice, "visits.csv", CSV)]
    provider = provider_for(kind, model, stack, monkeypatch)
    reply = provider.complete(ModelRequest("Be brief.", [{"role": "user", "content": references(stack, files)}],
                                           MODELS[kind], 200))
    assert "attachments: image image/png (40x30 px" in reply.text
    assert "document application/pdf (2 pages" in reply.text and f"document text/plain ({len(CSV)} bytes" in reply.text
    assert reply.prompt_tokens > sum(f["token_estimate"] for f in files)
    sent = requests.get(f"{model.url}/_requests", timeout=5).json()["requests"][-1]["messages"][-1]["content"]
    if kind == "bedrock":
        assert [next(iter(b)) for b in sent] == ["image", "document", "document", "text", "cachePoint"]
        assert sent[0]["image"]["format"] == "png"
        assert (sent[1]["document"]["format"], sent[1]["document"]["name"]) == ("pdf", "q3 report pdf")
        assert (sent[2]["document"]["format"], sent[2]["document"]["name"]) == ("csv", "visits csv")
    else:
        assert [b["type"] for b in sent] == ["image", "document", "document", "text"]


def test_the_files_api_uploads_each_file_once(client, stack, alice, model, monkeypatch):
    files = [uploaded(client, alice, "chart.png", png(41, 31)), uploaded(client, alice, "report.pdf", pdf(1)),
             uploaded(client, alice, "visits.csv", CSV)]
    provider = provider_for("anthropic", model, stack, monkeypatch, files_api=True)
    before = len(requests.get(f"{model.url}/_files", timeout=5).json()["data"])
    messages = [{"role": "user", "content": references(stack, files)}]
    first = provider.complete(ModelRequest(None, messages, MODELS["anthropic"], 200))
    messages += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "And again?"}]
    provider.complete(ModelRequest(None, messages, MODELS["anthropic"], 200))

    uploads = requests.get(f"{model.url}/_files", timeout=5).json()["data"][before:]
    assert [(u["filename"], u["mime_type"]) for u in uploads] == [("chart.png", "image/png"),
                                                                  ("report.pdf", "application/pdf")]
    sent = requests.get(f"{model.url}/_requests", timeout=5).json()["requests"][-1]["messages"][0]["content"]
    assert [b["source"]["type"] for b in sent[:3]] == ["file", "file", "text"]  # the CSV goes as text
    assert [b["source"].get("file_id") for b in sent[:2]] == [u["id"] for u in uploads]
    with stack.services.sessions() as session:
        assert session.get(File, parse_file_id(files[0]["id"])).anthropic_file_id == uploads[0]["id"]


@pytest.mark.parametrize("kind", ["anthropic", "bedrock"])
def test_the_turn_after_a_large_document_reads_it_from_the_cache(kind, client, stack, alice, model, monkeypatch):
    notes = (f"Trip notes {uuid.uuid4()}\n" + "Day by day: trains, museums, and where to eat.\n" * 200).encode()
    document = uploaded(client, alice, "notes.md", notes)
    assert document["token_estimate"] > 2000
    provider = provider_for(kind, model, stack, monkeypatch)
    history = [{"role": "user", "content": references(stack, [document])}]
    first = provider.complete(ModelRequest(None, history, MODELS[kind], 200))
    assert first.cache_creation_input_tokens > document["token_estimate"]
    history += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "Which museum first?"}]
    second = provider.complete(ModelRequest(None, history, MODELS[kind], 200))
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
