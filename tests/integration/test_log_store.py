"""The conversation log store, on a real folder and on S3 (moto over HTTP)."""

from __future__ import annotations

import os
from uuid import uuid4

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from shared.storage import (
    LocalLogStore,
    S3LogStore,
    StorageUnavailable,
    conversation_prefix,
    make_log_store,
    turn_key,
)

BUCKET = "parley-test-logs"
S3_PREFIX = "some/prefix"
UNREACHABLE = "http://127.0.0.1:1"


@pytest.fixture(scope="module")
def aws_env():
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN",
                     "AWS_SECURITY_TOKEN", "AWS_REGION", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
                     "https_proxy"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        yield


@pytest.fixture(scope="module")
def moto_url(aws_env):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=url).create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return make_log_store(str(tmp_path / "logs"))
    url = request.getfixturevalue("moto_url")
    return make_log_store(f"s3://{BUCKET}/{S3_PREFIX}", s3_endpoint_url=url)


@pytest.fixture
def prefix():
    return conversation_prefix(uuid4(), uuid4())


def object_size(store, key: str) -> int:
    if isinstance(store, LocalLogStore):
        return (store.root / key).stat().st_size
    return store.client.head_object(Bucket=store.bucket, Key=store.prefix + key)["ContentLength"]


def entry(seq: int = 1, content: str = "hello") -> dict:
    return {"role": "user", "content": content, "tokens": 2, "seq": seq}


# ---------------------------------------------------------------- both stores


def test_make_log_store_picks_the_backend(store):
    if isinstance(store, S3LogStore):
        assert store.bucket == BUCKET
        assert store.prefix == S3_PREFIX + "/"
    else:
        assert isinstance(store, LocalLogStore)
        assert store.root.is_dir()


def test_put_get_round_trip_preserves_unicode(store, prefix):
    value = {
        "role": "assistant",
        "content": "héllo 👋 — 日本語 «ok»\n\t\"quoted\" \\ back\u2028slash \x00 nul",
        "tokens": 17,
        "nested": {"list": [1, 2.5, None, True], "empty": ""},
    }
    key = turn_key(prefix, 1)
    store.put(key, value)
    assert store.get(key) == value


def test_put_overwrites(store, prefix):
    key = turn_key(prefix, 1)
    store.put(key, entry(content="first"))
    store.put(key, entry(content="second"))
    assert store.get(key)["content"] == "second"
    assert store.list_keys(prefix) == [key]


def test_get_missing_key_returns_none(store, prefix):
    assert store.get(turn_key(prefix, 1)) is None
    store.put(turn_key(prefix, 1), entry())
    assert store.get(turn_key(prefix, 2)) is None


def test_list_keys_of_missing_prefix_is_empty(store, prefix):
    assert store.list_keys(prefix) == []


def test_list_keys_in_turn_order(store, prefix):
    # Written out of order; 2 < 10 only holds because turn_key zero-pads.
    seqs = [12, 3, 10, 1, 2, 11, 9, 4, 8, 5, 7, 6]
    for seq in seqs:
        store.put(turn_key(prefix, seq), entry(seq))
    keys = store.list_keys(prefix)
    assert keys == [turn_key(prefix, seq) for seq in range(1, 13)]
    assert [store.get(k)["seq"] for k in keys] == list(range(1, 13))


def test_turn_key_zero_pads():
    assert turn_key("p/", 7) == "p/turns/0000000007.json"
    assert turn_key("p/", 10) > turn_key("p/", 9)


def test_appending_a_turn_writes_one_object_whose_size_does_not_grow(store, prefix):
    same = {"role": "user", "content": "the same message every time", "tokens": 6}
    store.put(turn_key(prefix, 1), same)
    first_size = object_size(store, turn_key(prefix, 1))
    for seq in range(2, 21):
        store.put(turn_key(prefix, seq), same)
    store.put(turn_key(prefix, 500), same)

    assert object_size(store, turn_key(prefix, 500)) == first_size
    assert object_size(store, turn_key(prefix, 20)) == first_size
    keys = store.list_keys(prefix)
    assert len(keys) == 21  # one object per turn, nothing else
    assert keys[-1] == turn_key(prefix, 500)
    # Earlier turns are left as written.
    assert store.get(turn_key(prefix, 1)) == same
    assert object_size(store, turn_key(prefix, 1)) == first_size


def test_delete_prefix_removes_only_that_conversation(store, prefix):
    other = conversation_prefix(uuid4(), uuid4())
    for seq in range(1, 4):
        store.put(turn_key(prefix, seq), entry(seq))
        store.put(turn_key(other, seq), entry(seq))

    store.delete_prefix(prefix)

    assert store.list_keys(prefix) == []
    assert store.get(turn_key(prefix, 1)) is None
    assert store.list_keys(other) == [turn_key(other, seq) for seq in range(1, 4)]
    assert store.get(turn_key(other, 2)) == entry(2)
    # Deleting again (or a prefix that never existed) is harmless.
    store.delete_prefix(prefix)
    store.delete_prefix(conversation_prefix(uuid4(), uuid4()))
    assert len(store.list_keys(other)) == 3


def test_same_user_other_conversation_is_untouched(store):
    user = uuid4()
    a, b = conversation_prefix(user, uuid4()), conversation_prefix(user, uuid4())
    store.put(turn_key(a, 1), entry())
    store.put(turn_key(b, 1), entry())
    store.delete_prefix(a)
    assert store.list_keys(a) == []
    assert store.list_keys(b) == [turn_key(b, 1)]


def test_ping(store):
    store.ping()


# ---------------------------------------------------------------- S3 only


def test_s3_objects_live_under_the_configured_prefix(moto_url, prefix):
    store = make_log_store(f"s3://{BUCKET}/{S3_PREFIX}", s3_endpoint_url=moto_url)
    store.put(turn_key(prefix, 1), entry())
    raw = store.client.list_objects_v2(Bucket=BUCKET, Prefix=f"{S3_PREFIX}/{prefix}")
    assert [o["Key"] for o in raw["Contents"]] == [f"{S3_PREFIX}/{turn_key(prefix, 1)}"]
    head = store.client.head_object(Bucket=BUCKET, Key=f"{S3_PREFIX}/{turn_key(prefix, 1)}")
    assert head["ContentType"] == "application/json"


def test_s3_uses_the_buckets_own_credentials(moto_url, prefix, monkeypatch):
    """S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY sign the bucket's requests; the AWS chain
    (Bedrock's) can hold other keys, or none."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store = make_log_store(f"s3://{BUCKET}/{S3_PREFIX}", s3_endpoint_url=moto_url,
                           s3_credentials=("minio-user", "minio-secret"))
    store.put(turn_key(prefix, 1), entry())
    assert store.get(turn_key(prefix, 1)) == entry()


def test_s3_list_keys_follows_pagination(moto_url, prefix):
    # More than one list_objects_v2 page (1000 keys) would be slow; force small pages instead.
    store = make_log_store(f"s3://{BUCKET}/{S3_PREFIX}", s3_endpoint_url=moto_url)
    for seq in range(1, 8):
        store.put(turn_key(prefix, seq), entry(seq))
    real = store.client.list_objects_v2

    def small_pages(**kwargs):
        return real(MaxKeys=3, **kwargs)

    store.client.list_objects_v2 = small_pages
    try:
        assert store.list_keys(prefix) == [turn_key(prefix, seq) for seq in range(1, 8)]
        store.delete_prefix(prefix)
    finally:
        del store.client.list_objects_v2
    assert store.list_keys(prefix) == []


def test_s3_ping_unreachable_endpoint_raises_storage_unavailable(aws_env):
    store = make_log_store(f"s3://{BUCKET}/{S3_PREFIX}", s3_endpoint_url=UNREACHABLE)
    with pytest.raises(StorageUnavailable):
        store.ping()
    # Bounded, not hanging: every S3 call has a connect timeout and a few attempts (the bench
    # times outages; pytest-timeout catches a hang).
    config = store.client.meta.config
    assert config.connect_timeout <= 5 and config.retries["total_max_attempts"] <= 4


def test_s3_operations_on_unreachable_endpoint_raise_storage_unavailable(aws_env, prefix):
    client = boto3.client(
        "s3", endpoint_url=UNREACHABLE,
        config=Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1}),
    )
    store = S3LogStore(client, BUCKET, S3_PREFIX)
    with pytest.raises(StorageUnavailable):
        store.put(turn_key(prefix, 1), entry())
    with pytest.raises(StorageUnavailable):
        store.get(turn_key(prefix, 1))
    with pytest.raises(StorageUnavailable):
        store.list_keys(prefix)


# ---------------------------------------------------------------- local only


@pytest.mark.parametrize("key", [
    "../outside/escape.json",
    "users/../../outside/escape.json",
    "users/x/conversations/y/../../../../../outside/escape.json",
    "{tmp}/outside/escape.json",  # an absolute path
])
def test_local_key_escaping_the_root_is_rejected(tmp_path, key):
    key = key.format(tmp=tmp_path)
    store = make_log_store(str(tmp_path / "logs"))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.json").write_text("{}")
    with pytest.raises(ValueError):
        store.put(key, entry())
    with pytest.raises(ValueError):
        store.get(key)
    with pytest.raises(ValueError):
        store.delete_prefix(key.rsplit("/", 1)[0] + "/")
    with pytest.raises(ValueError):
        store.list_keys(key.rsplit("/", 1)[0] + "/")
    assert not (outside / "escape.json").exists()
    assert (outside / "keep.json").is_file()


def test_local_file_url(tmp_path, prefix):
    store = make_log_store(f"file://{tmp_path / 'logs'}")
    assert isinstance(store, LocalLogStore)
    assert store.root == tmp_path / "logs"
    store.put(turn_key(prefix, 1), entry())
    assert (tmp_path / "logs" / turn_key(prefix, 1)).is_file()


def test_local_write_leaves_no_temp_files(tmp_path, prefix):
    store = make_log_store(str(tmp_path / "logs"))
    for seq in range(1, 4):
        store.put(turn_key(prefix, seq), entry(seq))
    folder = tmp_path / "logs" / prefix / "turns"
    assert sorted(p.name for p in folder.iterdir()) == [f"{seq:010d}.json" for seq in range(1, 4)]


def test_local_ping_fails_when_the_folder_is_gone(tmp_path):
    store = make_log_store(str(tmp_path / "logs"))
    (tmp_path / "logs").rmdir()
    with pytest.raises(StorageUnavailable):
        store.ping()


def test_local_write_after_its_folder_was_deleted_makes_it_again(tmp_path, prefix):
    """Folders are made when a write finds them missing, not checked on every write."""
    store = make_log_store(str(tmp_path / "logs"))
    store.put(turn_key(prefix, 1), entry(1))
    store.delete_prefix(prefix)
    store.put(turn_key(prefix, 2), entry(2))
    assert store.list_keys(prefix) == [turn_key(prefix, 2)]
    assert store.get(turn_key(prefix, 2)) == entry(2)


def test_local_failed_write_keeps_the_old_object_and_no_temp_file(tmp_path, prefix, monkeypatch):
    store = make_log_store(str(tmp_path / "logs"))
    store.put(turn_key(prefix, 1), entry(1))

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        store.put(turn_key(prefix, 1), entry(2))
    assert store.get(turn_key(prefix, 1)) == entry(1)
    assert [p.name for p in (tmp_path / "logs" / prefix / "turns").iterdir()] == [f"{1:010d}.json"]
