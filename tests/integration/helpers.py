"""Small HTTP helpers for the integration tests."""
from __future__ import annotations

WAIT = 20


def new_conversation(client, headers, **body) -> str:
    response = client.post("/v1/conversations", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def submit(client, headers, conversation_id: str, content: str, **extra_headers) -> dict:
    response = client.post(f"/v1/conversations/{conversation_id}/messages", json={"content": content},
                           headers={**headers, **extra_headers})
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job"]


def wait_job(client, headers, job_id: str) -> dict:
    response = client.get(f"/v1/jobs/{job_id}?wait={WAIT}", headers=headers)
    assert response.status_code == 200, response.get_json()
    job = response.get_json()
    assert job["status"] in ("succeeded", "failed", "cancelled"), job
    return job


def say(client, headers, conversation_id: str, content: str) -> dict:
    job = wait_job(client, headers, submit(client, headers, conversation_id, content)["id"])
    assert job["status"] == "succeeded", job
    return job
