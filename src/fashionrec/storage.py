"""Storage URIs: a local folder, or gs://, s3://, minio:// through fsspec (releases, the request log, the feedback
events, the catalogue change log all live under one), and the JSON-lines logs written to them."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
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


def absolute_location(location: str | Path) -> str:
    """A storage location that means the same from any working directory: a local path made absolute, a URL as is."""
    return str(location) if "://" in str(location) else str(Path(location).absolute())


LOG_SUFFIX = ".jsonl"
LOG_BUFFER_LINES = 20_000  # records held between flushes at most, unless the log says otherwise
# A part file's name: the time it was written (ns since the epoch, zero-padded, so that names sort by time), then
# the writer (pid-random) or, for a compacted part, "day-YYYYMMDD" (UTC) with the time of the newest part it holds.
LOG_PART = re.compile(r"(?P<ns>\d{20})-(?P<writer>[^/]+)\.jsonl")
DAY_PART = re.compile(r"day-\d{8}")
# A day is compacted once it ended this long ago: a replica whose clock lags may still name a part by it meanwhile.
COMPACT_GRACE_S = 3600.0
SKIPPED_EXAMPLES = 5  # bad lines a report names (the count covers them all)
T = TypeVar("T")


def write_log_lines(location: str, lines: list[str]) -> None:
    """Append JSON lines to a local ``.jsonl`` file, or add one part file under any other location (a folder, gs://,
    s3://, minio://), named by time and process: object storage cannot append, and every replica writes its own."""
    body = "\n".join(lines) + "\n"
    if local_log_file(location):
        path = Path(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as log:
            log.write(body)
        return
    fs, root = storage(location)
    fs.makedirs(root, exist_ok=True)
    fs.pipe_file(f"{root}/{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(3)}{LOG_SUFFIX}", body.encode("utf-8"))


def local_log_file(location: str) -> bool:
    """A log that is one appended local file (no parts)."""
    return location.endswith(LOG_SUFFIX) and "://" not in location


@dataclass(frozen=True)
class LogPart:
    path: str
    written_ns: int | None  # None: a name that carries no time (never skipped, merged or dropped)
    day: str | None  # YYYYMMDD (UTC) of written_ns
    compacted: bool  # a day part: it holds every part of its day written at or before it


def log_part(path: str) -> LogPart:
    found = LOG_PART.fullmatch(path.rsplit("/", 1)[-1])
    if found is None:
        return LogPart(path, None, None, False)
    written = int(found["ns"])
    day = time.strftime("%Y%m%d", time.gmtime(written / 1e9))
    return LogPart(path, written, day, DAY_PART.fullmatch(found["writer"]) is not None)


def _parts(fs: Any, root: str) -> tuple[list[LogPart], list[LogPart]]:
    """The parts of a log folder in the order written, and apart those a day part already holds (an interrupted
    compaction leaves them: never read twice, deleted by the next compaction)."""
    parts = [log_part(str(p)) for p in sorted(fs.ls(root, detail=False)) if str(p).endswith(LOG_SUFFIX)]
    newest_day_part: dict[str, int] = {}
    for part in parts:
        if part.compacted and part.day is not None and part.written_ns is not None:
            newest_day_part[part.day] = max(newest_day_part.get(part.day, 0), part.written_ns)
    live: list[LogPart] = []
    held: list[LogPart] = []
    for part in parts:
        covering = newest_day_part.get(part.day or "")
        inside = covering is not None and part.written_ns is not None and part.written_ns <= covering
        (held if inside and not (part.compacted and part.written_ns == covering) else live).append(part)
    return live, held


def _located_lines(location: str, since: float | None) -> Iterator[tuple[str, str]]:
    """(where, line) of every non-blank line; a part written before ``since`` (Unix seconds) holds only older lines
    and is not read. Undecodable bytes become U+FFFD: that line fails to parse, not the whole part."""
    if local_log_file(location):
        path = Path(location)
        if not path.exists():
            return
        with path.open(encoding="utf-8", errors="replace") as log:
            for number, line in enumerate(log, 1):
                if line.strip():
                    yield f"{path.name}:{number}", line.rstrip("\r\n")
        return
    fs, root = storage(location)
    fs.invalidate_cache(root)  # s3fs and gcsfs cache listings for good: a later read would miss the newer parts
    if not fs.exists(root):
        return
    live, _ = _parts(fs, root)
    for part in live:
        if since is not None and part.written_ns is not None and part.written_ns < since * 1e9:
            continue
        name = part.path.rsplit("/", 1)[-1]
        for number, line in enumerate(fs.cat_file(part.path).decode("utf-8", errors="replace").splitlines(), 1):
            if line.strip():
                yield f"{name}:{number}", line


def read_log_lines(location: str, since: float | None = None) -> Iterator[str]:
    """Every line written by ``write_log_lines`` to ``location`` (part files in the order they were written; with
    ``since``, only the parts written since then: older lines of a local file or a part still come)."""
    yield from (line for _, line in _located_lines(location, since))


@dataclass
class SkippedLines:
    """Lines of a log that did not parse (a write cut short, a corrupt part): skipped and counted, never fatal."""

    count: int = 0
    examples: list[str] = field(default_factory=list)  # the first few, as "part:line: error"

    def add(self, where: str, error: Exception) -> None:
        self.count += 1
        if len(self.examples) < SKIPPED_EXAMPLES:
            self.examples.append(f"{where}: {error}")


def read_log_records(
    location: str, parse: Callable[[str], T | None], skipped: SkippedLines, since: float | None = None
) -> Iterator[T]:
    """Each line of the log parsed by ``parse`` (None: a line the reader does not want); a line that does not parse
    (ValueError, TypeError, KeyError: a truncated write, a corrupt part, another format) is counted in ``skipped``
    and passed over, so one bad line can never fail every later run. What every reader of the logs goes through."""
    for where, line in _located_lines(location, since):
        try:
            record = parse(line)
        except (ValueError, TypeError, KeyError) as exc:
            skipped.add(where, exc)
            continue
        if record is not None:
            yield record


@dataclass(frozen=True)
class Compaction:
    merged: int  # parts merged into day parts
    written: int  # day parts written
    deleted: int  # parts deleted: merged, held by a day part already, or past keep_days


def compact_log(location: str, now: float | None = None, keep_days: float | None = None) -> Compaction:
    """Merge each finished UTC day of a log folder into one part (a reader then opens a part a day, not one per
    flush of every replica) and, with ``keep_days``, delete the parts written before that many days ago. A local
    ``.jsonl`` file has no parts: nothing to do. Safe to interrupt and to rerun: a day part is complete before the
    parts it holds are deleted, and until then readers skip those (a day part holds every part of its day written
    at or before it)."""
    if local_log_file(location):
        return Compaction(0, 0, 0)
    fs, root = storage(location)
    fs.invalidate_cache(root)  # as for a read: compact what is there now
    if not fs.exists(root):
        return Compaction(0, 0, 0)
    now = time.time() if now is None else now
    live, doomed = _parts(fs, root)
    if keep_days is not None:
        expired = [p for p in live if p.written_ns is not None and p.written_ns < (now - keep_days * 86400) * 1e9]
        doomed += expired
        live = [p for p in live if p not in expired]
    finished = time.strftime("%Y%m%d", time.gmtime(now - COMPACT_GRACE_S - 86400))  # the last day over by the grace
    days: dict[str, list[LogPart]] = {}
    for part in live:
        if part.day is not None and part.day <= finished:
            days.setdefault(part.day, []).append(part)
    merged = written = 0
    for day, parts in sorted(days.items()):
        if len(parts) == 1 and parts[0].compacted:
            continue
        newest = max(p.written_ns or 0 for p in parts)
        _write_whole(fs, f"{root}/{newest:020d}-day-{day}{LOG_SUFFIX}", (fs.cat_file(p.path) for p in parts))
        merged, written = merged + len(parts), written + 1
        doomed += parts
    for part in doomed:
        with contextlib.suppress(FileNotFoundError):  # a compaction running beside this one deleted it first
            fs.rm_file(part.path)
    return Compaction(merged, written, len(doomed))


def _write_whole(fs: Any, path: str, bodies: Iterator[bytes]) -> None:
    """Write a file from chunks so that no reader ever sees it half written: under a name no reader lists, synced
    (on a local disk), then renamed; one chunk in memory at a time."""
    partial = f"{path}.partial"
    with fs.open(partial, "wb") as out:
        for body in bodies:
            out.write(body if body.endswith(b"\n") or not body else body + b"\n")
        if "file" in fs.protocol or "local" in fs.protocol:
            out.flush()
            os.fsync(out.fileno())
    fs.mv(partial, path)


class LogBuffer(Generic[T]):
    """Records waiting for their log (the request log, the feedback events): request threads ``add``, one background
    thread ``flush``es, encoding each record to its line there (off the request path). Bounded: past ``capacity``
    records new ones are refused and counted in ``dropped``, so a burst or an unreachable bucket costs records, never
    the server's memory. A failed write keeps its records for the next flush, as far as the bound allows.
    ``on_drop`` hears of every record dropped, as it happens (the transformer counts them in Prometheus).
    ``lossless``: what was taken is never dropped (the feedback events, acknowledged with a 202): a failed write keeps
    all its records even past ``capacity`` (at most twice it, as records added during the write are bounded too), and
    ``add`` refuses until the buffer is back under it."""

    def __init__(
        self, location: str, encode: Callable[[T], str], capacity: int = LOG_BUFFER_LINES,
        on_drop: Callable[[int], None] | None = None, lossless: bool = False,
    ) -> None:  # fmt: skip
        self.location = location
        self.encode = encode
        self.capacity = capacity
        self.on_drop = on_drop
        self.lossless = lossless
        self.dropped = 0
        self._records: list[T] = []
        self._lock = threading.Lock()

    def add(self, records: list[T]) -> bool:
        """Queue all of ``records`` or none of them (False: the buffer is full)."""
        with self._lock:
            full = len(self._records) + len(records) > self.capacity
            if full:
                self.dropped += len(records)
            else:
                self._records.extend(records)
        if full:
            self._dropped(len(records))
        return not full

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
                room = len(records) if self.lossless else max(self.capacity - len(self._records), 0)
                lost = max(len(records) - room, 0)
                self.dropped += lost
                self._records[:0] = records[:room]
            self._dropped(lost)
            raise
        return len(records)

    def _dropped(self, count: int) -> None:
        if count and self.on_drop is not None:
            self.on_drop(count)
