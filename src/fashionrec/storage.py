"""Storage URIs: a local folder, or gs://, s3://, minio:// through fsspec (releases, the request log, the feedback
events, the catalogue change log all live under one), and the JSON-lines logs written to them."""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import unquote

# KFP's MinIO scheme; the S3 API of a MinIO server (endpoint from $AWS_ENDPOINT_URL, KFP's in-cluster MinIO otherwise).
MINIO_ENDPOINT = "http://minio-service.kubeflow:9000"


# The password of a URL's user info (scheme://[user]:PASSWORD@host): up to the last "@" before a space, so that a
# malformed URL (a raw "@" or "/" in its password, "redis:/" for "redis://") is hidden whole: hiding too much is the
# safe error.
URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*:/*[^\s/@:]*:)(?P<password>\S*)(?=@)")
# ...and the password option of a connection string (Feast's Redis form: host:port,db=0,password=...).
OPTION_PASSWORD = re.compile(r"(?P<head>\bpassword=)(?P<password>[^\s,'\"]*)", re.IGNORECASE)
# The one form of password a parameter may hold: a reference to an environment variable, expanded where it is used.
ENV_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
REDACTED = "***"


def redact_urls(text: str) -> str:
    """``text`` with the password of every URL (and of every ``password=`` option) replaced by ``***``: for any
    message or log line that shows a URL given by a person (online store, registry, tracking or storage URI)."""
    return OPTION_PASSWORD.sub(_redacted, URL_PASSWORD.sub(_redacted, text))


def _secret(password: str) -> bool:
    return bool(password) and not ENV_REFERENCE.fullmatch(unquote(password))


def _redacted(match: re.Match[str]) -> str:
    # a ${VAR} reference is no secret, and shows which variable is missing when the store refuses the login
    return match["head"] + (REDACTED if _secret(match["password"]) else match["password"])


def literal_password(url: str) -> bool:
    """Whether ``url`` carries a password that is not a ``${VAR}`` reference (an empty one is none)."""
    return any(_secret(found["password"]) for found in URL_PASSWORD.finditer(url))


def refuse_literal_passwords(parameters: Mapping[str, Any]) -> None:
    """A run's parameters are stored with it (and a Feast URL in the feature_store.yaml it publishes): a password in
    a URL parameter must be a ``${VAR}`` reference. The error names the parameter, never the password."""
    for name, value in parameters.items():
        if isinstance(value, str) and literal_password(value):
            raise ValueError(
                f"{name} holds a literal password ({redact_urls(value)}): a parameter is stored with the run, so write "
                "the password as ${VAR}, an environment variable of the step (Feast expands it from the credentials "
                "Secret: ${FEAST_REDIS_PASSWORD}, ${FEAST_REGISTRY_PASSWORD}), or leave it out of the URL"
            )


def storage(uri: str) -> tuple[Any, str]:
    """The fsspec filesystem and path of a storage URI (minio:// is S3 against a MinIO endpoint)."""
    import fsspec  # deferred: its S3 and GCS backends load on first use

    if uri.startswith("minio://"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL", MINIO_ENDPOINT)
        return fsspec.filesystem("s3", client_kwargs={"endpoint_url": endpoint}), uri.removeprefix("minio://")
    fs, path = fsspec.core.url_to_fs(uri)
    return fs, path


LOG_SUFFIX = ".jsonl"
LOG_BUFFER_LINES = 20_000  # records held between flushes at most, unless the log says otherwise
T = TypeVar("T")


def write_log_lines(location: str, lines: list[str]) -> None:
    """Append JSON lines to a local ``.jsonl`` file, or add one part file under any other location (a folder, gs://,
    s3://, minio://), named by time and process: object storage cannot append, and every replica writes its own."""
    body = "\n".join(lines) + "\n"
    if location.endswith(LOG_SUFFIX) and "://" not in location:
        path = Path(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as log:
            log.write(body)
        return
    fs, root = storage(location)
    fs.makedirs(root, exist_ok=True)
    fs.pipe_file(f"{root}/{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(3)}{LOG_SUFFIX}", body.encode("utf-8"))


def read_log_lines(location: str) -> Iterator[str]:
    """Every line written by ``write_log_lines`` to ``location`` (part files in the order they were written)."""
    if location.endswith(LOG_SUFFIX) and "://" not in location:
        paths = [Path(location)] if Path(location).exists() else []
        for path in paths:
            yield from (line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        return
    fs, root = storage(location)
    if not fs.exists(root):
        return
    for part in sorted(p for p in fs.ls(root, detail=False) if str(p).endswith(LOG_SUFFIX)):
        yield from (line for line in fs.cat_file(part).decode("utf-8").splitlines() if line.strip())


class LogBuffer(Generic[T]):
    """Records waiting for their log (the request log, the feedback events): request threads ``add``, one background
    thread ``flush``es, encoding each record to its line there (off the request path). Bounded: past ``capacity``
    records new ones are refused and counted in ``dropped``, so a burst or an unreachable bucket costs records, never
    the server's memory. A failed write keeps its records for the next flush, as far as the bound allows."""

    def __init__(self, location: str, encode: Callable[[T], str], capacity: int = LOG_BUFFER_LINES) -> None:
        self.location = location
        self.encode = encode
        self.capacity = capacity
        self.dropped = 0
        self._records: list[T] = []
        self._lock = threading.Lock()

    def add(self, records: list[T]) -> bool:
        """Queue all of ``records`` or none of them (False: the buffer is full)."""
        with self._lock:
            if len(self._records) + len(records) > self.capacity:
                self.dropped += len(records)
                return False
            self._records.extend(records)
            return True

    def __len__(self) -> int:
        return len(self._records)

    def flush(self) -> int:
        """Write what is queued; returns how many records were written. Raises (records kept) when the write fails."""
        with self._lock:
            records, self._records = self._records, []
        if not records:
            return 0
        try:
            write_log_lines(self.location, [self.encode(record) for record in records])
        except Exception:
            with self._lock:
                room = max(self.capacity - len(self._records), 0)
                self.dropped += max(len(records) - room, 0)
                self._records[:0] = records[:room]
            raise
        return len(records)
