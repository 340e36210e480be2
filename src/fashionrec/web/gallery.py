"""The gallery's HTTP server: the page and its static files, the catalogue's rows and photos, and the neighbours of a
product or an uploaded photo, asked from one transformer (or two, side by side) over the v2 protocol.

Standard library only (``http.server``): the gallery is a small loopback tool and must run wherever the client does.
Every answer to bad input is a 4xx with a message the page shows; a transformer that fails is a 502 naming it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fashionrec.config import DEFAULT_TOP_K, GALLERY_PORT, LOOPBACK, MAX_IMAGE_BYTES, MAX_TOP_K
from fashionrec.data.catalog import STYLES_FILE
from fashionrec.engagement.events import cloud_event
from fashionrec.serving.client import (
    QueryError,
    Steering,
    image_request,
    infer,
    item_request,
    parse_hits,
    post_feedback,
)
from fashionrec.storage import redact_urls
from fashionrec.web.catalogue import FILTER_COLUMNS, BadRequest, Catalogue, Query

logger = logging.getLogger(__name__)

PRIMARY = "primary"  # the transformer the gallery asks first; "compare" is the one shown beside it
COMPARE = "compare"
STATIC_FILES = {  # everything the page loads, all from the package (no CDN: it works offline)
    "index.html": "text/html; charset=utf-8",
    "gallery.js": "text/javascript; charset=utf-8",
    "gallery.css": "text/css; charset=utf-8",
}
# The page may load nothing from anywhere else; blob: is the preview of a photo the person dropped.
CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
# A body above the upload limit is read and thrown away up to this many times the limit, so that a browser that
# sends before it reads gets the 413 and its message instead of a reset connection; beyond that the gallery hangs up.
DRAIN_FACTOR = 4
DRAIN_CHUNK = 1 << 16
MAX_REPORT_BYTES = 64 * 1024  # one page's impressions or one click, many times over
FEEDBACK_SOURCE = "fashionrec/gallery"
# An absolute filesystem path: a "/" that starts no URL path (no scheme, host or word before it), then its folders.
ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])/(?:[^\s/'\"]+/)+(?P<name>[^\s/'\"]*)")


class GalleryStartError(RuntimeError):
    """The gallery could not listen where it was asked to; the message says what to change."""


def require_loopback(host: str) -> None:
    """The gallery has no authentication and proxies uploads to the transformer: it listens on loopback only."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise GalleryStartError(f"the gallery listens on loopback only (127.0.0.1, ::1 or localhost), not {host!r}")


@dataclass(frozen=True)
class GallerySettings:
    catalog_dir: Path  # Kaggle layout: styles.csv + images/<id>.jpg, the catalogue the transformer serves
    transformer_url: str  # the transformer's base URL (what `fashionrec serve` prints)
    compare_url: str | None = None  # a second transformer (another model version), shown side by side
    host: str = LOOPBACK
    port: int = GALLERY_PORT  # 0: any free port
    top_k: int = DEFAULT_TOP_K
    max_upload_bytes: int = MAX_IMAGE_BYTES  # the transformer refuses a larger image anyway: refuse it before the hop

    def targets(self) -> dict[str, str]:
        named = {PRIMARY: self.transformer_url, COMPARE: self.compare_url}
        return {name: url.rstrip("/") for name, url in named.items() if url}


def check_upload_size(content_length: str | None, limit: int) -> int:
    """The size of an upload from its Content-Length header; an upload without one, empty or over the limit is refused."""
    if content_length is None:
        raise BadRequest("an upload needs a Content-Length header", HTTPStatus.LENGTH_REQUIRED)
    try:
        size = int(content_length)
    except ValueError:
        raise BadRequest(f"Content-Length must be a whole number, got {content_length!r}") from None
    if size <= 0:
        raise BadRequest("the upload is empty: choose a photo (JPEG, PNG or WebP)")
    if size > limit:
        raise BadRequest(
            f"the upload is {size / 2**20:.1f} MiB; photos up to {limit / 2**20:.0f} MiB are accepted",
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        )
    return size


def without_paths(text: str) -> str:
    """``text`` with every absolute path reduced to its file name: what the page shows never says where the
    catalogue, the gallery or a server keeps its files (the gallery's log has them)."""
    return ABSOLUTE_PATH.sub(lambda match: match["name"], text)


def failure_message(exc: Exception) -> str:
    """What the page is told of an unexpected failure: its kind and, for a file, the file's name, never its path."""
    if isinstance(exc, OSError) and exc.filename:
        reason = exc.strerror or type(exc).__name__
        return f"the gallery could not read {Path(str(exc.filename)).name} ({reason}); its log has the details"
    return f"the gallery failed: {type(exc).__name__}: {without_paths(str(exc))}"


def parse_item_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f"a product id is a whole number, got {text!r}") from None


class Gallery:
    """What the server's handlers answer with, separate from HTTP so that it can be tested without a server."""

    def __init__(self, settings: GallerySettings) -> None:
        self.settings = settings
        self.catalogue = Catalogue(settings.catalog_dir)

    def page_config(self) -> dict[str, Any]:
        return {
            "targets": [{"name": name, "url": url} for name, url in self.settings.targets().items()],
            "top_k": self.settings.top_k,
            "max_upload_bytes": self.settings.max_upload_bytes,
            "filters": list(FILTER_COLUMNS),
        }

    def target_url(self, name: str) -> str:
        targets = self.settings.targets()
        if name not in targets:
            hint = " (start the gallery with --compare-url to compare two transformers)" if name == COMPARE else ""
            raise BadRequest(f"no transformer named {name!r}{hint}")
        return targets[name]

    def neighbours(self, target: str, body: dict[str, Any]) -> dict[str, Any]:
        """One v2 query to the named transformer: its model_version and hits, or a BadRequest carrying its 4xx
        message (a 5xx or no answer becomes a 502: the transformer failed, not the person's input)."""
        url = self.target_url(target)
        try:
            response = infer(url, body)
        except QueryError as exc:
            message = without_paths(str(exc).removeprefix(f"HTTP {exc.status}: "))  # the transformer's own text
            if 400 <= exc.status < 500:
                raise BadRequest(message, exc.status) from None
            failure = "did not answer" if exc.status == 0 else f"answered {exc.status}"
            raise BadRequest(f"the transformer at {redact_urls(url)} {failure}: {message}", HTTPStatus.BAD_GATEWAY) from None
        table = self.catalogue.table()
        hits = [
            {
                "item_id": hit.item_id,
                "score": hit.score,
                "attributes": hit.attributes,
                "has_photo": table.product(hit.item_id) is not None,
            }
            for hit in parse_hits(response)[0]
        ]
        return {
            "target": target,
            "transformer": url,
            "model_version": response.get("model_version", ""),
            "request_id": response.get("id", ""),  # what the page's feedback events refer to
            "hits": hits,
        }

    def report(self, target: str, body: bytes) -> dict[str, Any]:
        """Forward what the page showed or the person clicked to the named transformer's feedback API, as CloudEvents
        (fashionrec.engagement.events); the transformer's 4xx reaches the page, its failure is a 502."""
        url = self.target_url(target)
        try:
            report = json.loads(body)
            kind, request_id, version, session = (report[k] for k in ("kind", "request_id", "model_version", "session_id"))
            shown = [(int(item), int(rank)) for item, rank in report["items"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise BadRequest(
                f"a report is {{kind, request_id, model_version, session_id, items: [[item_id, rank]]}}: {exc}"
            ) from None
        events = [
            cloud_event(kind, f"{request_id}-{kind}-{rank}", request_id, version, item, rank, session, source=FEEDBACK_SOURCE)
            for item, rank in shown
        ]
        try:
            return {"accepted": post_feedback(url, events)}
        except QueryError as exc:
            message = without_paths(str(exc).removeprefix(f"HTTP {exc.status}: "))
            if 400 <= exc.status < 500:
                raise BadRequest(message, exc.status) from None
            raise BadRequest(
                f"the transformer at {redact_urls(url)} did not take the events: {message}", HTTPStatus.BAD_GATEWAY
            ) from None

    def similar_to_item(self, target: str, item_id: int, steering: Steering | None = None) -> dict[str, Any]:
        return self.neighbours(target, item_request([item_id], self.settings.top_k, steering))

    def similar_to_photo(self, target: str, photo: bytes, steering: Steering | None = None) -> dict[str, Any]:
        return self.neighbours(target, image_request([photo], self.settings.top_k, steering))


def steering_of(params: dict[str, str]) -> Steering:
    """The page's neighbour options (query parameters ``filter`` and ``exclude_ids`` as JSON, ``family_cap``) as the
    transformer's steering; what the transformer refuses reaches the page with its own message."""
    try:
        conditions = json.loads(params["filter"]) if params.get("filter") else None
        excluded = json.loads(params["exclude_ids"]) if params.get("exclude_ids") else None
        cap = int(params["family_cap"]) if params.get("family_cap") else None
    except ValueError as exc:
        raise BadRequest(f"filter and exclude_ids are JSON, family_cap an integer: {exc}") from None
    return Steering(filter=conditions, exclude_ids=excluded, family_cap=cap)


class GalleryHandler(BaseHTTPRequestHandler):
    server: GalleryHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 60  # a client that stops sending mid-request does not hold a thread for ever
    server_version = "fashionrec-gallery"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per thumbnail would drown what `fashionrec serve` prints."""

    @property
    def gallery(self) -> Gallery:
        return self.server.gallery

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _answer(self, route: Any) -> None:
        try:
            self._check_origin()
            route(urlsplit(self.path))
        except BadRequest as exc:
            self._send_json({"error": str(exc)}, exc.status)
        except (BrokenPipeError, ConnectionResetError):  # the browser went away (a page left mid-load): nobody to answer
            self.close_connection = True
        except Exception as exc:  # a bug: the page still gets an answer it can show, and the log the trace
            logger.exception("gallery request %s %s failed", self.command, self.path)
            self.close_connection = True
            self._send_json({"error": failure_message(exc)}, HTTPStatus.INTERNAL_SERVER_ERROR)

    def _get(self, url: Any) -> None:
        params = dict(parse_qsl(url.query))
        path: str = url.path
        if path in ("/", "/index.html"):
            self._send_static("index.html")
        elif path.startswith("/static/"):
            self._send_static(path.removeprefix("/static/"))
        elif path.startswith("/images/") and path.endswith(".jpg"):
            self._send_photo(path.removeprefix("/images/").removesuffix(".jpg"))
        elif path == "/api/config":
            self._send_json(self.gallery.page_config())
        elif path == "/api/facets":
            self._send_json(self.gallery.catalogue.table().facets())
        elif path == "/api/products":
            self._send_json(self.gallery.catalogue.table().page(Query.parse(params)).as_json())
        elif path.startswith("/api/similar/item/"):
            item_id = parse_item_id(path.removeprefix("/api/similar/item/"))
            self._send_json(self.gallery.similar_to_item(params.get("target", PRIMARY), item_id, steering_of(params)))
        else:
            raise BadRequest(f"nothing at {path}", HTTPStatus.NOT_FOUND)

    def _check_origin(self) -> None:
        """Only pages of the gallery itself: a Host that is not one of its loopback names (a DNS-rebinding page) or
        a cross-site Origin on a post is refused before anything is read or forwarded."""
        allowed = self.server.host_names()
        if self.headers.get("Host", "") not in allowed:
            self.close_connection = True
            raise BadRequest("the gallery answers only to its own loopback address", HTTPStatus.FORBIDDEN)
        origin = self.headers.get("Origin")
        if self.command == "POST" and origin is not None and origin not in {f"http://{host}" for host in allowed}:
            self.close_connection = True
            raise BadRequest("posts come only from the gallery's own page", HTTPStatus.FORBIDDEN)

    def _post(self, url: Any) -> None:
        if url.path == "/api/feedback":
            params = dict(parse_qsl(url.query))
            size = self._body_size(MAX_REPORT_BYTES)
            self._send_json(self.gallery.report(params.get("target", PRIMARY), self.rfile.read(size)), HTTPStatus.ACCEPTED)
            return
        if url.path != "/api/similar/image":
            self._drain(self.headers.get("Content-Length"))
            raise BadRequest(f"nothing to post at {url.path}", HTTPStatus.NOT_FOUND)
        params = dict(parse_qsl(url.query))
        target = params.get("target", PRIMARY)
        size = self._body_size(self.gallery.settings.max_upload_bytes)
        photo = self.rfile.read(size)
        if len(photo) < size:
            raise BadRequest(f"the upload stopped after {len(photo)} of {size} bytes")
        self._send_json(self.gallery.similar_to_photo(target, photo, steering_of(params)))

    def _body_size(self, limit: int) -> int:
        """The size of the body to read (check_upload_size); a refused body is drained or the connection closed."""
        content_length = self.headers.get("Content-Length")
        try:
            if self.headers.get("Transfer-Encoding") is not None:  # http.server cannot find the end of a chunked body
                raise BadRequest("an upload needs a Content-Length header, not chunks", HTTPStatus.LENGTH_REQUIRED)
            return check_upload_size(content_length, limit)
        except BadRequest:
            self._drain(content_length)
            raise

    def _drain(self, content_length: str | None) -> None:
        """Read a refused body (up to DRAIN_FACTOR times the limit) so that the client reads the answer; a larger
        or unsized one closes the connection after the answer: whatever it sent next would be read as a request."""
        try:
            remaining = int(content_length) if content_length is not None else -1
        except ValueError:
            remaining = -1
        if self.headers.get("Transfer-Encoding") is not None:
            remaining = -1
        if not 0 <= remaining <= DRAIN_FACTOR * self.gallery.settings.max_upload_bytes:
            self.close_connection = True
            return
        while remaining > 0 and (chunk := self.rfile.read(min(remaining, DRAIN_CHUNK))):
            remaining -= len(chunk)

    def _send_static(self, name: str) -> None:
        if name not in STATIC_FILES:
            raise BadRequest(f"no static file {name!r}", HTTPStatus.NOT_FOUND)
        body = resources.files("fashionrec.web").joinpath("static", name).read_bytes()
        self._send(body, STATIC_FILES[name], cache="no-cache")

    def _send_photo(self, text: str) -> None:
        photo = self.gallery.catalogue.photo(parse_item_id(text))  # an integer id: no path can be smuggled in
        if photo is None:
            raise BadRequest(f"no photo of product {text} in the catalogue", HTTPStatus.NOT_FOUND)
        self._send(photo.read_bytes(), "image/jpeg", cache="max-age=3600")

    def _send_json(self, payload: dict[str, Any], status: int = HTTPStatus.OK) -> None:
        self._send(json.dumps(payload).encode(), "application/json", status=status, cache="no-store")

    def _send(self, body: bytes, content_type: str, status: int = HTTPStatus.OK, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.send_header("X-Content-Type-Options", "nosniff")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


class GalleryHTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck browser connection never keeps the process alive at exit

    def __init__(self, gallery: Gallery) -> None:
        require_loopback(gallery.settings.host)
        try:
            super().__init__((gallery.settings.host, gallery.settings.port), GalleryHandler)
        except OSError as exc:
            raise GalleryStartError(
                f"the gallery cannot listen on {gallery.settings.host}:{gallery.settings.port} ({exc.strerror}); "
                "choose another port"
            ) from exc
        self.gallery = gallery

    def host_names(self) -> set[str]:
        """The Host values the gallery answers to: its loopback names with its port."""
        port = self.server_address[1]
        return {f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")} | {self.url.removeprefix("http://")}

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"http://[{name}]:{port}" if ":" in name else f"http://{name}:{port}"


@contextlib.contextmanager
def serving_gallery(settings: GallerySettings) -> Iterator[GalleryHTTPServer]:
    """The gallery answering on a background thread until the block ends."""
    if not (settings.catalog_dir / STYLES_FILE).is_file():
        raise GalleryStartError(
            f"no catalogue at {settings.catalog_dir} ({STYLES_FILE} + images/): pass its folder with --catalog"
        )
    if not 1 <= settings.top_k <= MAX_TOP_K:
        raise GalleryStartError(f"top_k must be between 1 and {MAX_TOP_K}, got {settings.top_k}")
    server = GalleryHTTPServer(Gallery(settings))
    thread = threading.Thread(target=server.serve_forever, name="fashionrec-gallery", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
