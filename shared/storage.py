"""The conversation log: one object per turn under the conversation's prefix.

Appending a turn writes one small object, so its cost does not grow with the
conversation. Keys are zero-padded so a listing comes back in turn order.
Every key is built from server-side ids only.
"""
from __future__ import annotations

import os
import shutil
import threading
from collections import deque
from contextlib import suppress
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator, Protocol
from urllib.parse import urlparse

import orjson


# GETs in flight per process, over all requests. Each GET mostly waits on the network,
# so reading a page's objects at once costs about one round trip instead of one per turn;
# the cap keeps a burst of pages and exports within botocore's connection pool.
READ_THREADS = 64


class StorageUnavailable(Exception):
    """The object store could not be reached."""


class LogStore(Protocol):
    def put(self, key: str, entry: dict) -> None: ...
    def get(self, key: str) -> dict | None: ...
    def get_many(self, keys: Iterable[str], ahead: int) -> Iterator[dict | None]: ...
    def put_many(self, entries: list[tuple[str, dict]]) -> None: ...
    def list_keys(self, prefix: str) -> list[str]: ...
    def delete_prefix(self, prefix: str) -> None: ...
    def ping(self) -> None: ...
    # Attachments: raw bytes beside the log (see file_key).
    def put_bytes(self, key: str, data: bytes, media_type: str) -> None: ...
    def get_bytes(self, key: str) -> bytes | None: ...
    def delete_key(self, key: str) -> None: ...


def conversation_prefix(user_id: object, conversation_id: object) -> str:
    return f"users/{user_id}/conversations/{conversation_id}/"


def turn_key(prefix: str, seq: int) -> str:
    return f"{prefix}turns/{seq:010d}.json"


def file_key(user_id: object, file_id: object) -> str:
    """An attachment's bytes: under its owner's prefix, apart from any conversation's log."""
    return f"users/{user_id}/files/{file_id}"


def encode(entry: dict) -> bytes:
    return orjson.dumps(entry)  # compact UTF-8, as json.dumps(ensure_ascii=False, separators=(",", ":"))


class LocalLogStore:
    """A folder on disk; writes are atomic renames so a reader never sees half an entry."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._base = os.path.realpath(self.root)  # resolved once, not on every key

    def _file(self, key: str) -> str:
        """The key's file. Keys are built from server-side ids, so the check is lexical: a
        key that would leave the folder ('..', an absolute path) is refused without
        asking the disk (resolving every key's path cost ~12 lstat calls a write)."""
        path = os.path.normpath(os.path.join(self._base, key))
        if path != self._base and not path.startswith(self._base + os.sep):
            raise ValueError("key escapes the store")
        return path

    def _path(self, key: str) -> Path:
        return Path(self._file(key))

    def _write(self, key: str, data: bytes) -> None:
        """Write to a file of this process and thread beside the key's, synced, then rename
        it over the key's: a reader sees the old object or the new one, never a part. The
        folder is made only when it is missing (a conversation's first write), not
        checked on every write."""
        path = self._file(key)
        folder, name = os.path.split(path)
        tmp = os.path.join(folder, f".tmp-{name}-{os.getpid()}-{threading.get_ident()}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        try:
            fd = os.open(tmp, flags, 0o600)
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(tmp, flags, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def put(self, key: str, entry: dict) -> None:
        self._write(key, encode(entry))

    def get(self, key: str) -> dict | None:
        data = self.get_bytes(key)
        return None if data is None else orjson.loads(data)

    def get_many(self, keys: Iterable[str], ahead: int) -> Iterator[dict | None]:
        """`get` of each key in order; a local read is too quick to gain from threads."""
        for key in keys:
            yield self.get(key)

    def put_many(self, entries: list[tuple[str, dict]]) -> None:
        for key, entry in entries:
            self.put(key, entry)

    def list_keys(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(os.path.relpath(p, self._base) for p in base.rglob("*.json") if not p.name.startswith(".tmp-"))

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self._path(prefix), ignore_errors=True)

    def ping(self) -> None:
        if not self.root.is_dir():
            raise StorageUnavailable(f"{self.root} is not a folder")

    def put_bytes(self, key: str, data: bytes, media_type: str) -> None:
        self._write(key, data)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def delete_key(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class S3LogStore:
    def __init__(self, client, bucket: str, prefix: str = ""):
        self.client, self.bucket = client, bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._readers: ThreadPoolExecutor | None = None  # made on first use: never before a fork
        self._readers_lock = threading.Lock()

    def _call(self, method: str, **kwargs):
        from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError, HTTPClientError
        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)
        except (BotoConnectionError, HTTPClientError) as error:  # refused, reset, timed out
            raise StorageUnavailable(str(error)) from error
        except ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status >= 500:
                raise StorageUnavailable(str(error)) from error
            raise

    def put(self, key: str, entry: dict) -> None:
        self._call("put_object", Key=self.prefix + key, Body=encode(entry), ContentType="application/json")

    def get(self, key: str) -> dict | None:
        data = self.get_bytes(key)
        return None if data is None else orjson.loads(data)

    def get_many(self, keys: Iterable[str], ahead: int) -> Iterator[dict | None]:
        """`get` of each key, yielded in order, with up to `ahead` GETs of this call in flight
        (and READ_THREADS in the process). `keys` is consumed lazily, so an export can page
        through its keys while the reads run; pending reads are cancelled if the caller stops."""
        pending: deque = deque()
        try:
            for key in keys:
                pending.append(self._pool().submit(self.get, key))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()

    def put_many(self, entries: list[tuple[str, dict]]) -> None:
        """`put` of each (key, entry) at once; returns when all are written, raises the first error."""
        for future in [self._pool().submit(self.put, key, entry) for key, entry in entries]:
            future.result()

    def _pool(self) -> ThreadPoolExecutor:
        with self._readers_lock:
            if self._readers is None:
                self._readers = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="log-io")
            return self._readers

    def _pages(self, prefix: str) -> Iterable[dict]:
        token = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            page = self._call("list_objects_v2", Prefix=self.prefix + prefix, **extra)
            yield page
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def list_keys(self, prefix: str) -> list[str]:
        keys = [item["Key"][len(self.prefix):] for page in self._pages(prefix) for item in page.get("Contents", [])]
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> None:
        for page in self._pages(prefix):
            objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if objects:
                result = self._call("delete_objects", Delete={"Objects": objects, "Quiet": True})
                if result.get("Errors"):
                    first = result["Errors"][0]
                    raise StorageUnavailable(f"could not delete {first.get('Key')}: {first.get('Message')}")

    def ping(self) -> None:
        self._call("head_bucket")

    def put_bytes(self, key: str, data: bytes, media_type: str) -> None:
        self._call("put_object", Key=self.prefix + key, Body=data, ContentType=media_type)

    def get_bytes(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError, HTTPClientError
        try:
            response = self._call("get_object", Key=self.prefix + key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        try:
            return response["Body"].read()
        except HTTPClientError as error:
            raise StorageUnavailable(str(error)) from error

    def delete_key(self, key: str) -> None:
        self._call("delete_object", Key=self.prefix + key)


def make_log_store(storage_url: str, s3_endpoint_url: str | None = None,
                   s3_credentials: tuple[str, str] | None = None) -> LogStore:
    """`s3_credentials` (key id, secret) are the bucket's own, e.g. MinIO's beside Bedrock's;
    without them boto3's credential chain is used."""
    if storage_url.startswith("s3://"):
        import boto3
        from botocore.config import Config

        parsed = urlparse(storage_url)
        key_id, secret = s3_credentials or (None, None)
        client = boto3.client(
            "s3", endpoint_url=s3_endpoint_url or None, aws_access_key_id=key_id, aws_secret_access_key=secret,
            config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"},
                          max_pool_connections=READ_THREADS + 8),  # + writers and listings
        )
        return S3LogStore(client, parsed.netloc, parsed.path)
    path = urlparse(storage_url).path if storage_url.startswith("file://") else storage_url
    return LocalLogStore(Path(path))
