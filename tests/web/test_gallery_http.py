"""The gallery's HTTP layer against a stub transformer: what it answers, and that bad input is always a 4xx with a
message (never a 5xx or a dropped connection). No browser, no model."""

import base64
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from sample_catalogue import ROWS, WITH_PHOTOS, write_catalogue

from fashionrec.config import MODEL_NAME
from fashionrec.serving.processes import free_port
from fashionrec.web.gallery import (
    CONTENT_SECURITY_POLICY,
    GallerySettings,
    GalleryStartError,
    failure_message,
    serving_gallery,
)

STUB_VERSION = "stub-model-1"
SERVER_FILE = "/mnt/models/index/items.faiss"
UPLOAD_LIMIT = 4096
JPEG_MAGIC = b"\xff\xd8\xff"


def v2_answer(ids: list[int], scores: list[float]) -> dict[str, object]:
    names = [f"product {i}" for i in ids]
    return {
        "model_name": MODEL_NAME,
        "model_version": STUB_VERSION,
        "outputs": [
            {"name": "item_id", "datatype": "INT64", "shape": [1, len(ids)], "data": ids},
            {"name": "score", "datatype": "FP32", "shape": [1, len(ids)], "data": scores},
            {"name": "productDisplayName", "datatype": "BYTES", "shape": [1, len(ids)], "data": names},
        ],
    }


class StubTransformer(BaseHTTPRequestHandler):
    """Answers v2 queries as the transformer would: item 404404 and non-JPEG bytes are refused with a 400."""

    queries: ClassVar[list[dict[str, object]]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.queries.append(body)
        tensor = body["inputs"][0]
        answer: dict[str, object]
        if tensor["name"] == "item_id" and tensor["data"] == [404404]:
            status, answer = 400, {"error": "unknown item_id 404404"}
        elif tensor["name"] == "item_id" and tensor["data"] == [500500]:  # a server's failure naming its files
            status, answer = 500, {"error": f"cannot read {SERVER_FILE}: the index is gone"}
        elif tensor["name"] == "image" and not base64.b64decode(tensor["data"][0]).startswith(JPEG_MAGIC):
            status, answer = 400, {"error": "image 0 is not a recognised image format"}
        else:
            status, answer = 200, v2_answer([2, 3, 77], [0.9, 0.5, 0.25])
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def transformer_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubTransformer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def gallery(transformer_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    catalog = write_catalogue(tmp_path_factory.mktemp("catalog"), ROWS, WITH_PHOTOS)
    settings = GallerySettings(catalog, transformer_url, port=0, top_k=3, max_upload_bytes=UPLOAD_LIMIT)
    with serving_gallery(settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def test_the_page_and_its_files_come_from_the_package_with_a_same_origin_policy(gallery: httpx.Client) -> None:
    page = gallery.get("/")
    assert page.status_code == 200 and "/static/gallery.js" in page.text
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY and "default-src 'self'" in CONTENT_SECURITY_POLICY
    assert "//" not in page.text.replace("<!doctype", "")  # no absolute URL: nothing from a CDN
    for name, kind in (("gallery.js", "text/javascript"), ("gallery.css", "text/css")):
        answer = gallery.get(f"/static/{name}")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind) and "http" not in answer.text
    for path in ("/static/gallery.py", "/static/../gallery.py", "/static/%2e%2e/catalogue.py", "/nowhere"):
        answer = gallery.get(path)
        assert answer.status_code == 404 and answer.json()["error"]


def test_products_are_paged_and_filtered_and_bad_parameters_are_a_400(gallery: httpx.Client) -> None:
    page = gallery.get("/api/products", params={"gender": "Men", "page_size": 2}).json()
    assert [p["item_id"] for p in page["products"]] == [1, 3] and (page["total"], page["pages"]) == (3, 2)
    assert page["products"][0]["attributes"]["productDisplayName"] == "Blue Oxford Shirt"
    assert gallery.get("/api/facets").json()["gender"] == ["Men", "Women"]
    refused = gallery.get("/api/products", params={"page": "-1"})
    assert refused.status_code == 400 and "page must be at least 1" in refused.json()["error"]


def test_thumbnails_are_the_catalogues_photos_and_nothing_else(gallery: httpx.Client) -> None:
    photo = gallery.get("/images/1.jpg")
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg" and photo.content.startswith(JPEG_MAGIC)
    for path in ("/images/6.jpg", "/images/999.jpg"):  # a row without photo, no row
        assert gallery.get(path).status_code == 404
    traversal = gallery.get("/images/..%2Fstyles.jpg")
    assert traversal.status_code == 400 and "whole number" in traversal.json()["error"]


def test_a_products_neighbours_come_with_scores_attributes_and_the_model_version(gallery: httpx.Client) -> None:
    answer = gallery.get("/api/similar/item/1")
    assert answer.status_code == 200
    body = answer.json()
    assert body["model_version"] == STUB_VERSION and body["target"] == "primary"
    assert [(h["item_id"], round(h["score"], 2), h["has_photo"]) for h in body["hits"]] == [
        (2, 0.9, True),
        (3, 0.5, True),
        (77, 0.25, False),  # the transformer knows a product the catalogue folder has no photo of
    ]
    assert body["hits"][0]["attributes"]["productDisplayName"] == "product 2"
    assert StubTransformer.queries[-1]["parameters"] == {"top_k": 3}


def test_the_transformers_4xx_message_reaches_the_page(gallery: httpx.Client) -> None:
    unknown = gallery.get("/api/similar/item/404404")
    assert unknown.status_code == 400 and unknown.json()["error"] == "unknown item_id 404404"
    not_a_number = gallery.get("/api/similar/item/shirt")
    assert not_a_number.status_code == 400 and "whole number" in not_a_number.json()["error"]
    pdf = gallery.post("/api/similar/image", content=b"%PDF-1.4 a document", headers={"Content-Type": "application/octet-stream"})
    assert pdf.status_code == 400 and pdf.json()["error"] == "image 0 is not a recognised image format"
    photo = gallery.get("/images/1.jpg").content
    assert gallery.post("/api/similar/image", content=photo).json()["hits"][0]["item_id"] == 2


def test_uploads_are_capped_empty_ones_refused_and_the_refusal_is_read_not_reset(gallery: httpx.Client) -> None:
    queries_before = len(StubTransformer.queries)
    too_large = gallery.post("/api/similar/image", content=JPEG_MAGIC + b"\0" * UPLOAD_LIMIT)
    assert too_large.status_code == 413 and "accepted" in too_large.json()["error"]
    empty = gallery.post("/api/similar/image", content=b"")
    assert empty.status_code == 400 and "empty" in empty.json()["error"]
    far_too_large = gallery.post("/api/similar/image", content=b"\0" * (UPLOAD_LIMIT * 64))  # beyond what is drained
    assert far_too_large.status_code == 413
    assert len(StubTransformer.queries) == queries_before  # none of them reached the transformer
    assert gallery.get("/api/facets").status_code == 200  # and the gallery goes on


def test_no_second_transformer_and_a_transformer_that_is_down_are_explained(gallery: httpx.Client, tmp_path: Path) -> None:
    compare = gallery.get("/api/similar/item/1", params={"target": "compare"})
    assert compare.status_code == 400 and "--compare-url" in compare.json()["error"]
    assert [t["name"] for t in gallery.get("/api/config").json()["targets"]] == ["primary"]
    down = f"http://127.0.0.1:{free_port()}"
    catalog = write_catalogue(tmp_path, ROWS, WITH_PHOTOS)
    with serving_gallery(GallerySettings(catalog, down, compare_url=down, port=0)) as server:
        answer = httpx.get(f"{server.url}/api/similar/item/1", params={"target": "compare"})
        assert answer.status_code == 502 and "did not answer" in answer.json()["error"]
        assert [t["name"] for t in httpx.get(f"{server.url}/api/config").json()["targets"]] == ["primary", "compare"]


def test_the_gallery_listens_on_loopback_only_and_says_what_is_wrong(tmp_path: Path) -> None:
    catalog = write_catalogue(tmp_path, ROWS, WITH_PHOTOS)
    with (
        pytest.raises(GalleryStartError, match="loopback only"),
        serving_gallery(GallerySettings(catalog, "http://127.0.0.1:9", host="0.0.0.0", port=0)),
    ):
        pass
    with pytest.raises(GalleryStartError, match="no catalogue"), serving_gallery(GallerySettings(tmp_path / "none", "x", port=0)):
        pass
    with serving_gallery(GallerySettings(catalog, "http://127.0.0.1:9", port=0)) as first:
        taken = int(first.url.rsplit(":", 1)[1])
        with (
            pytest.raises(GalleryStartError, match="choose another port"),
            serving_gallery(GallerySettings(catalog, "http://127.0.0.1:9", port=taken)),
        ):
            pass


def test_the_gallery_imports_no_index_faiss_torch_or_kserve() -> None:
    code = "import sys, fashionrec.web.gallery; print(sorted(m for m in ('faiss', 'torch', 'kserve', 'feast', 'fashionrec.retrieval.index') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"


def test_only_the_galleries_own_host_and_origin_are_answered(gallery: httpx.Client) -> None:
    """A DNS-rebinding page (another Host) reads nothing; another site's page posts nothing through the gallery."""
    port = str(gallery.base_url).rsplit(":", 1)[1].rstrip("/")
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        assert gallery.get("/api/facets", headers={"Host": host}).status_code == 200
    rebound = gallery.get("/api/facets", headers={"Host": f"attacker.example:{port}"})
    assert rebound.status_code == 403 and "loopback" in rebound.json()["error"]
    before = len(StubTransformer.queries)
    for path in ("/api/similar/image", "/api/feedback"):
        forged = gallery.post(path, content=b"\xff\xd8\xff", headers={"Origin": "http://attacker.example"})
        assert forged.status_code == 403 and "own page" in forged.json()["error"]
    assert len(StubTransformer.queries) == before  # nothing was forwarded
    own = gallery.post("/api/feedback", content=b"{}", headers={"Origin": f"http://127.0.0.1:{port}"})
    assert own.status_code == 400 and "a report is" in own.json()["error"]


def raw_exchange(base_url: str, request: bytes) -> bytes:
    """Send bytes on one connection and read until the gallery closes it (or stops answering)."""
    host, port = str(base_url).removeprefix("http://").rstrip("/").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        try:
            while chunk := connection.recv(65536):
                received += chunk
        except TimeoutError:  # still open: the gallery waits for another request on it
            received += b"<still open>"
    return received


@pytest.mark.parametrize(
    "unsized",
    [b"", b"Transfer-Encoding: chunked\r\n"],
    ids=["no Content-Length", "chunked"],
)
def test_a_411_closes_the_connection_so_an_unsized_body_is_never_read_as_a_request(gallery: httpx.Client, unsized: bytes) -> None:
    host = str(gallery.base_url).removeprefix("http://").rstrip("/").encode()
    smuggled = b"GET /api/facets HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(smuggled), smuggled) if unsized else smuggled
    request = b"POST /api/similar/image HTTP/1.1\r\nHost: " + host + b"\r\n" + unsized + b"\r\n" + body
    received = raw_exchange(str(gallery.base_url), request)
    assert received.startswith(b"HTTP/1.1 411 ") and b"Content-Length header" in received
    assert b"\r\nConnection: close\r\n" in received
    assert received.count(b"HTTP/1.1 ") == 1 and not received.endswith(b"<still open>")  # nothing else was answered


def test_error_answers_show_file_names_never_absolute_paths(transformer_url: str, tmp_path: Path) -> None:
    catalog = write_catalogue(tmp_path / "catalogue", ROWS, WITH_PHOTOS)
    with serving_gallery(GallerySettings(catalog, transformer_url, port=0)) as server:
        failed = httpx.get(f"{server.url}/api/similar/item/500500")  # the transformer's message names its file
        assert failed.status_code == 502 and "items.faiss" in failed.json()["error"]
        assert "/mnt/models" not in failed.text
        (catalog / "styles.csv").unlink()  # a failure of the gallery's own: it cannot read the catalogue
        broken = httpx.get(f"{server.url}/api/facets")
        assert broken.status_code == 500 and "styles.csv" in broken.json()["error"]
        assert str(tmp_path) not in broken.text and "/catalogue/" not in broken.text


def test_a_failure_message_keeps_the_kind_and_file_name_only() -> None:
    unreadable = PermissionError(13, "Permission denied", "/home/someone/shop/images/1.jpg")
    assert failure_message(unreadable) == "the gallery could not read 1.jpg (Permission denied); its log has the details"
    assert failure_message(ValueError("bad row in /srv/shop/styles.csv line 3")) == (
        "the gallery failed: ValueError: bad row in styles.csv line 3"
    )


def test_the_pages_neighbour_options_travel_as_the_transformers_steering_parameters(gallery: httpx.Client) -> None:
    options = {"filter": '{"gender": "Women"}', "exclude_ids": "[3, 9]", "family_cap": "1"}
    assert gallery.get("/api/similar/item/1", params=options).status_code == 200
    assert StubTransformer.queries[-1]["parameters"] == {
        "top_k": 3,
        "filter": '{"gender": "Women"}',
        "exclude_ids": "[3, 9]",
        "family_cap": 1,
    }
    photo = gallery.get("/images/1.jpg").content
    assert gallery.post("/api/similar/image", params={"exclude_ids": "[2]"}, content=photo).status_code == 200
    assert StubTransformer.queries[-1]["parameters"] == {"top_k": 3, "exclude_ids": "[2]"}
    for bad in ({"filter": "{gender"}, {"exclude_ids": "[1,"}, {"family_cap": "one"}):
        answer = gallery.get("/api/similar/item/1", params=bad)
        assert answer.status_code == 400 and "JSON" in answer.json()["error"]
