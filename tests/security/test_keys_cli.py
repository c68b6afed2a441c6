"""`python -m api.keys`: issue, list, revoke, create-user; and `make user NAME=…`."""
from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from api.keys import main
from shared.config import ROOT
from shared.models import ApiKey
from shared.users import find_keys
from tests.security.support import bearer


@pytest.fixture()
def keys(stack, monkeypatch, capsys):
    """Run the command in this process; returns (exit status, stdout lines, stderr)."""
    monkeypatch.setenv("DATABASE_URL", stack.settings.database_url)

    def run(*argv: str) -> tuple[int, list[str], str]:
        status = main(list(argv))
        out, err = capsys.readouterr()
        return status, out.splitlines(), err
    return run


def works(client, key: str) -> bool:
    status = client.get("/v1/conversations", headers=bearer(key)).status_code
    assert status in (200, 401), status
    return status == 200


def test_issue_list_and_revoke(stack, client, keys):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    status, out, _ = keys("issue", name)
    assert status == 0
    first = out[-1]
    assert first.startswith("pk_") and len(first) >= 43 and works(client, first)
    status, out, _ = keys(name)  # the original form still issues
    second = out[-1]
    assert status == 0 and second != first and works(client, second)

    status, listing, _ = keys("list", name)
    assert status == 0 and len(listing) == 3  # a header and two keys
    assert all(first not in line and second not in line for line in listing), "a listing never shows a key"
    with stack.services.sessions() as session:
        (row_first,), (row_second,) = find_keys(session, first), find_keys(session, second)
    assert listing[1].split()[:2] == [row_first.prefix, str(row_first.id)] and listing[1].split()[-1] == "-"

    status, out, _ = keys("revoke", row_first.prefix)
    assert status == 0 and "revoked" in out[-1]
    assert not works(client, first), "a revoked key stops working at once"
    assert works(client, second)
    status, out, _ = keys("revoke", str(row_second.id))
    assert status == 0 and not works(client, second)
    status, out, _ = keys("revoke", second)  # by the whole key, again
    assert status == 0 and "already revoked" in out[-1]

    status, listing, _ = keys("list", name)
    assert all(line.split()[-1] != "-" for line in listing[1:]), listing


def test_create_user_and_errors(stack, keys):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    assert keys("create-user", name)[1][-1].startswith(f"user {name} created")
    assert "already exists" in keys("create-user", name)[1][-1]
    assert keys("list", name)[1][1:] == []
    status, _, err = keys("list", "nobody-" + uuid.uuid4().hex)
    assert status == 1 and "no user" in err
    status, _, err = keys("revoke", "pk_nothing")
    assert status == 1 and "no key" in err
    with pytest.raises(SystemExit) as exited:
        keys("issue", "  ")
    assert exited.value.code == 2


def test_an_ambiguous_prefix_revokes_nothing(stack, client, keys):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    one, two = keys("issue", name)[1][-1], keys("issue", name)[1][-1]
    with stack.services.sessions.begin() as session:
        session.query(ApiKey).filter(ApiKey.id == find_keys(session, two)[0].id).update({"prefix": one[:10]})
    status, _, err = keys("revoke", one[:10])
    assert status == 1 and "2 live keys" in err
    assert works(client, one) and works(client, two)


def test_make_user_prints_a_working_key_last(stack, client):
    # -o: the venv is taken as installed, so the target runs only the command.
    result = subprocess.run(["make", "-s", "-o", ".venv/.installed", f"PY={sys.executable}", "user",
                             f"NAME=make-{uuid.uuid4().hex[:8]}"],
                            cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert works(client, result.stdout.strip().splitlines()[-1])
