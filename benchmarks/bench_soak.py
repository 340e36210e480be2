"""Soak: steady mixed traffic through the local serving stack for 10+ minutes while faults are injected in turn, and
what was lost, counted by the client from what it sent against what storage holds afterwards.

    python benchmarks/bench_soak.py --catalog ../shared/data/fashion-sample-3k   # real photos, 7 phases of 100 s
    python benchmarks/bench_soak.py --phase-seconds 20                           # a generated catalogue, a quick look

The stack is production's, on loopback: TorchServe (token auth) and the transformer (REST v2), Feast's online store on
a redis-server that keeps an append-only file (as a production Redis does), the request log on an S3 API (moto's
server) behind a TCP proxy that can cut the network, and the catalogue change log the transformer applies live. Two
model versions are trained on the catalogue (``--epochs``, seeds 0 and 1); the second is rolled out mid-run.

Phases, ``--phase-seconds`` each, the fault starting 10 s in:
  steady     nothing (the baseline)
  predictor  TorchServe killed (SIGKILL of its process group) and started again on the same ports (new keys)
  redis      redis-server stopped (SIGTERM) for ``--redis-down-seconds``, then started on its data again
  storage    the request log's S3 endpoint unreachable for ``--storage-down-seconds`` (connections reset/refused)
  catalogue  ``--additions`` held-back products added, then ``--removals`` products (and two of the added) removed,
             as `fashionrec catalog add/remove` does, while the transformer applies the change log
  hot swap   the second version as a canary (half the traffic), promoted 30 s later (fashionrec.deploy's LocalTarget)
  steady     nothing (after everything)

Traffic is open-loop at ``--rate`` requests/s, half image queries (the catalogue's own photos, one per request) and
half item queries (ids never removed), each with its own request id; a request's latency counts from its scheduled
send time. A request on a keep-alive connection the server closed while idle is sent once more on a new one, as
HTTP clients do (counted). Per phase: requests sent, answered 2xx / 4xx / 5xx / not at all, p99, 5xx of requests
not in flight while the fault was on, recovery (the last failure's send time after the fault was lifted), and the
request-log lines missing for 2xx answers. After the run: every product added is in styles.csv, has a vector of the
served version in Redis and is answered by an item query; every product removed is gone from all three; Redis holds
one vector of the served version per styles.csv row. Prints tables and writes benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import platform
import shutil
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

from fashionrec.catalog.update import add_items, remove_items
from fashionrec.config import LOOPBACK, MODEL_NAME
from fashionrec.data.catalog import STYLES_FILE, read_styles, write_styles
from fashionrec.data.changes import ChangeLog
from fashionrec.data.synth import synth_catalog
from fashionrec.deploy.local_target import LocalServing, LocalTarget
from fashionrec.local.cluster_servers import running_s3
from fashionrec.local.deployment import Deployment
from fashionrec.local.faults import CuttableProxy
from fashionrec.local.redis import LocalRedis
from fashionrec.local.stages import StageOutputs, run_stages
from fashionrec.params import TrainConfig
from fashionrec.retrieval.feast_store import OnlineFeatures, StoreSettings, apply_and_materialize, open_store, stage_repo
from fashionrec.retrieval.online_rows import stored_versions
from fashionrec.serving.client import image_request, item_request
from fashionrec.serving.processes import LIVE_DIR, LocalTorchServe, serve_locally
from fashionrec.storage import SkippedLines, read_log_records, storage

RESULTS = Path(__file__).resolve().parent / "results"
BUCKET = "fashionrec-soak"
FAULT_AT_S = 10.0  # into its phase: the seconds before are the phase's own baseline
PROMOTE_AFTER_S = 30.0  # the canary's time at half the traffic before it is promoted
REMOVE_AFTER_S = 30.0  # between the catalogue phase's addition and its removal
CLIENT_THREADS = 16
CLIENT_TIMEOUT_S = 30.0
PHASES = ("steady", "predictor", "redis", "storage", "catalogue", "hot swap", "steady after")


@dataclass
class Sent:
    phase: str
    kind: str  # image | item
    request_id: str
    scheduled: float  # monotonic
    status: int = 0  # 0: no answer (connection refused or reset, timeout)
    latency_s: float = 0.0
    reason: str = ""
    model_version: str = ""
    retried: bool = False  # sent again on a new connection after the server closed an idle keep-alive one

    def during(self, fault: Fault | None) -> bool:
        """In flight at some moment while the fault was on."""
        return fault is not None and self.scheduled <= fault.lifted and self.scheduled + self.latency_s >= fault.started


@dataclass
class Fault:
    """When a phase's fault was on (monotonic times); ``lifted`` is when the stack was whole again."""

    started: float = 0.0
    lifted: float = 0.0


class Traffic:
    """Open-loop client: ``rate`` requests a second, scheduled ahead, sent from a pool of keep-alive connections."""

    def __init__(self, url: str, photos: list[bytes], item_ids: list[int], rate: float) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or LOOPBACK, parts.port or 80, parts.path
        self.photos = photos
        self.item_ids = item_ids
        self.rate = rate
        self.phase = PHASES[0]
        self.sent: list[Sent] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(CLIENT_THREADS)
        self._thread = threading.Thread(target=self._schedule, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)

    def _schedule(self) -> None:
        start = time.monotonic()
        for n in itertools.count():
            due = start + n / self.rate
            if self._stop.wait(max(due - time.monotonic(), 0.0)):
                return
            kind = "image" if n % 2 == 0 else "item"
            sent = Sent(self.phase, kind, f"soak-{n:07d}", due)
            with self._lock:
                self.sent.append(sent)
            self._pool.submit(self._send, sent, n // 2)

    def body(self, sent: Sent, n: int) -> bytes:
        if sent.kind == "image":
            request = image_request([self.photos[n % len(self.photos)]], top_k=10)
        else:
            request = item_request([self.item_ids[n % len(self.item_ids)]], top_k=10)
        return json.dumps({**request, "id": sent.request_id}).encode()

    def _send(self, sent: Sent, n: int) -> None:
        body = self.body(sent, n)
        for attempt in range(2):
            connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
            reused = connection is not None
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(self.host, self.port, timeout=CLIENT_TIMEOUT_S)
                    self._local.connection = connection
                connection.request("POST", self.path, body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException) as exc:
                with contextlib.suppress(Exception):
                    if connection is not None:
                        connection.close()
                self._local.connection = None
                # A keep-alive connection the server closed while idle: sent again once on a new one, as HTTP
                # clients do (httpx, urllib3); counted, so a server that resets connections still shows.
                if reused and attempt == 0 and isinstance(exc, ConnectionResetError | http.client.RemoteDisconnected):
                    sent.retried = True
                    continue
                sent.reason = f"no answer: {exc!r}"[:300]
                break
            sent.status = response.status
            if response.status == 200:
                sent.model_version = json.loads(answer).get("model_version", "")
            else:
                sent.reason = answer[:300].decode("utf-8", "replace")
            break
        sent.latency_s = time.monotonic() - sent.scheduled


def held_back_catalogue(source: Path, out: Path, held_back: int) -> tuple[Path, Path]:
    """A copy of ``source`` (edited by the run) without its last ``held_back`` products, and those products as a
    catalogue of additions (what `fashionrec catalog add` takes)."""
    rows = read_styles(source / STYLES_FILE).rows
    photos = {p.stem for p in (source / "images").glob("*.jpg")}
    rows = rows[rows["id"].isin(photos)]
    kept, added = rows.iloc[:-held_back], rows.iloc[-held_back:]
    for folder, part in ((out / "catalog", kept), (out / "additions", added)):
        (folder / "images").mkdir(parents=True)
        for item in part["id"]:
            shutil.copy2(source / "images" / f"{item}.jpg", folder / "images" / f"{item}.jpg")
        write_styles(part, folder / STYLES_FILE)
    return out / "catalog", out / "additions"


def on_redis(stages: StageOutputs, redis_url: str, out: Path) -> Deployment:
    """The trained version's deployment with its Feast repo on the shared Redis (materialized, as the pipeline does)."""
    repo = stage_repo(stages.embeddings, out, settings=StoreSettings(online_store=redis_url))
    apply_and_materialize(repo)
    return Deployment(stages.model_store, stages.index_dir, repo)


def kill_predictor(predictor: LocalTorchServe) -> None:
    assert predictor.process is not None and predictor.process.process is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(predictor.process.process.pid, signal.SIGKILL)
    predictor.process.process.wait(30)


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else (values[0] if values else 0.0)


def logged_request_ids(location: str) -> tuple[set[str], int]:
    skipped = SkippedLines()
    ids = {str(r) for r in read_log_records(location, lambda line: json.loads(line).get("request_id"), skipped)}
    return ids, skipped.count


def phase_rows(sent: list[Sent], faults: dict[str, Fault], logged: set[str]) -> list[dict[str, Any]]:
    rows = []
    for phase in PHASES:
        mine = [s for s in sent if s.phase == phase]
        fault = faults.get(phase)
        failed = [s for s in mine if not 200 <= s.status < 300]
        outside = [s for s in failed if s.status >= 500 and not s.during(fault)]
        after = [s.scheduled for s in failed if fault and s.scheduled > fault.lifted]
        answered = [s for s in mine if s.status == 200]
        reasons: dict[str, int] = {}
        for s in failed:
            key = f"{s.status}: {s.reason[:120]}"
            reasons[key] = reasons.get(key, 0) + 1
        rows.append(
            {
                "phase": phase,
                "sent": len(mine),
                "2xx": len(answered),
                "4xx": sum(400 <= s.status < 500 for s in mine),
                "5xx": sum(s.status >= 500 for s in mine),
                "no_answer": sum(s.status == 0 for s in mine),
                "retried_on_new_connection": sum(s.retried for s in mine),
                "5xx_outside_fault": len(outside),
                "503_with_reason": sum(s.status == 503 and bool(s.reason) for s in mine),
                "p99_ms": 1000 * p99([s.latency_s for s in answered]),
                "fault_s": (fault.lifted - fault.started) if fault else 0.0,
                "recovery_s": (max(after) - fault.lifted) if (fault and after) else 0.0,
                "log_lines_lost": sum(s.request_id not in logged for s in answered),
                "failures": dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:5]),
            }
        )
    return rows


def check_catalogue(url: str, catalog: Path, deployment: Deployment, added: list[int], removed: list[int]) -> dict[str, Any]:
    """What the client sent against what storage and the server hold now."""
    import httpx

    lines = {int(i) for i in read_styles(catalog / STYLES_FILE).rows["id"]}
    online = OnlineFeatures(deployment.feature_repo)
    stored = stored_versions(open_store(deployment.feature_repo)).get(deployment.model_version, 0)
    vectors = online.embeddings(added + removed, deployment.model_version)
    attributes = online.present(added + removed)

    def answered(item: int) -> int:
        return httpx.post(url, json=item_request([item], top_k=10), timeout=30).status_code

    return {
        "added": len(added),
        "removed": len(removed),
        "styles_rows": len(lines),
        "vectors_of_served_version": stored,  # one per catalogue row: none lost, none left behind
        "added_missing_from_styles": sorted(set(added) - lines),
        "added_without_vector": [i for i, v in zip(added, vectors[: len(added)], strict=True) if v is None],
        "added_not_answered": [i for i in added if answered(i) != 200],
        "removed_still_in_styles": sorted(set(removed) & lines),
        "removed_with_vector_or_attributes": sorted(
            {i for i, v in zip(removed, vectors[len(added) :], strict=True) if v is not None} | (set(removed) & set(attributes))
        ),
        "removed_still_answered": [i for i in removed if answered(i) == 200],
    }


@contextlib.contextmanager
def s3_request_log(root: Path) -> Iterator[tuple[CuttableProxy, str]]:
    """moto's S3 server behind a cuttable proxy, and the request log's location on it (the transformer's env)."""
    with running_s3(root / "s3") as server:
        proxy = CuttableProxy(server.port)
        os.environ.update(
            AWS_ENDPOINT_URL=f"http://{LOOPBACK}:{proxy.port}", AWS_ACCESS_KEY_ID="soak", AWS_SECRET_ACCESS_KEY="soak",
            AWS_DEFAULT_REGION="us-east-1",
        )  # fmt: skip
        fs, _ = storage(f"s3://{BUCKET}")
        fs.mkdir(BUCKET)
        try:
            yield proxy, f"s3://{BUCKET}/request-log"
        finally:
            proxy.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=Path, help="a Kaggle-layout catalogue (default: a generated one)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--phase-seconds", type=float, default=100.0)
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second, image and item queries alternating")
    parser.add_argument("--redis-down-seconds", type=float, default=5.0)
    parser.add_argument("--storage-down-seconds", type=float, default=60.0)
    parser.add_argument("--additions", type=int, default=20)
    parser.add_argument("--removals", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args()
    console = Console(width=160)

    with tempfile.TemporaryDirectory(prefix="fashionrec-soak-") as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        source = args.catalog
        if source is None:
            source = root / "generated"
            synth_catalog(source, items_per_type=20, n_types=6, seed=3)
        catalog, additions = held_back_catalogue(source, root, args.additions)
        console.print(f"training two versions on {catalog} ({args.epochs} epochs each)")
        versions = [run_stages(catalog, root / f"stages-{s}", TrainConfig(epochs=args.epochs, seed=s)) for s in (0, 1)]
        redis = LocalRedis(root / "redis", persistent=True)
        stack.callback(redis.stop)
        redis.start()
        first, second = (on_redis(v, f"{redis.url}/0", root / f"repo-{n}") for n, v in enumerate(versions))
        proxy, request_log = stack.enter_context(s3_request_log(root))
        changes = root / "changes"
        sent: list[Sent] = []
        faults: dict[str, Fault] = {}
        ids = sorted(int(i) for i in read_styles(catalog / STYLES_FILE).rows["id"])
        removed = ids[-args.removals :]
        added = sorted(int(i) for i in read_styles(additions / STYLES_FILE).rows["id"])
        removed_all = [*removed, *added[:2]]  # catalogue products, and two of those the run adds
        photos = [p.read_bytes() for p in sorted((catalog / "images").glob("*.jpg"))[:200]]
        with serve_locally(first, root / "serve", catalog_changes=changes, request_log=request_log, monitor_seconds=5.0) as (
            predictor,
            transformer,
        ):
            assert isinstance(predictor, LocalTorchServe)
            serving = LocalServing.of(predictor, transformer, root / "serve" / LIVE_DIR)
            target = LocalTarget(serving)
            url = f"{transformer.url}/v2/models/{MODEL_NAME}/infer"
            traffic = Traffic(url, photos, ids[: -args.removals], args.rate)

            def predictor_fault() -> None:
                kill_predictor(predictor)
                predictor.start()

            def redis_fault() -> None:
                redis.stop()
                time.sleep(args.redis_down_seconds)
                redis.start()

            def storage_fault() -> None:
                proxy.sever()
                time.sleep(args.storage_down_seconds)
                proxy.restore()

            def catalogue_change() -> None:
                log = ChangeLog(str(changes))
                add_items(additions, serving.served(), serving.predictor(), log, catalog, root / "add-report")
                time.sleep(REMOVE_AFTER_S)
                remove_items(removed_all, serving.served(), log, catalog)

            def hot_swap() -> None:
                target.start_canary(second, 0.5)
                time.sleep(PROMOTE_AFTER_S)
                target.promote(second)

            actions: dict[str, Callable[[], None]] = {
                "predictor": predictor_fault, "redis": redis_fault, "storage": storage_fault,
                "catalogue": catalogue_change, "hot swap": hot_swap,
            }  # fmt: skip
            traffic.start()
            for phase in PHASES:
                traffic.phase = phase
                began = time.monotonic()
                console.print(f"[bold]{phase}[/] ({args.phase_seconds:.0f} s)")
                if phase in actions:
                    time.sleep(FAULT_AT_S)
                    faults[phase] = Fault(started=time.monotonic())
                    actions[phase]()  # the fault, and what lifts it
                    faults[phase].lifted = time.monotonic()
                    console.print(f"  fault lifted after {faults[phase].lifted - faults[phase].started:.1f} s")
                time.sleep(max(began + args.phase_seconds - time.monotonic(), 0.0))
            traffic.stop()
            sent = traffic.sent
            catalogue = check_catalogue(url, catalog, second, added[2:], removed_all)
        logged, skipped = logged_request_ids(request_log)  # the transformer flushed its buffer when it stopped

    rows = phase_rows(sent, faults, logged)
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "catalogue": str(args.catalog or "generated"),
        "items": len(ids),
        "rate_per_s": args.rate,
        "phase_seconds": args.phase_seconds,
        "phases": rows,
        "catalogue_check": catalogue,
        "request_log_lines_skipped": skipped,
    }
    table = Table(title=f"soak: {args.rate:g} requests/s for {len(PHASES)} x {args.phase_seconds:.0f} s, {os.cpu_count()} cores")
    for column in (
        "phase",
        "sent",
        "2xx",
        "4xx",
        "5xx",
        "no answer",
        "5xx outside fault",
        "resent",
        "fault s",
        "recovery s",
        "p99 ms",
        "log lost",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            row["phase"], str(row["sent"]), str(row["2xx"]), str(row["4xx"]), str(row["5xx"]), str(row["no_answer"]),
            str(row["5xx_outside_fault"]), str(row["retried_on_new_connection"]), f"{row['fault_s']:.1f}", f"{row['recovery_s']:.1f}", f"{row['p99_ms']:.0f}",
            str(row["log_lines_lost"]),
        )  # fmt: skip
    console.print(table)
    for row in rows:
        for reason, count in row["failures"].items():
            console.print(f"  {row['phase']}: {count} x {reason}")
    console.print(json.dumps(catalogue, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
