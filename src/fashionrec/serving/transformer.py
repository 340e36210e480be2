"""The FAISS transformer: a kserve.Model in front of the encoder predictor.

- ``image`` requests: validate the images here (bad ones never reach the predictor), get embeddings from the
  predictor (v2 REST or gRPC, pooled connections), search FAISS, enrich the hits from the Feast online store.
- ``item_id`` requests: the item's embedding comes from the snapshot's own index (the vectors it searches; the
  online store only for an item added since the last catalogue poll); no predictor hop.

Never mix models: each request is answered by one snapshot (an index and the Feast store of one model version).
Image queries call the predictor's encoder of that version (``predictor_model_name``), and an embedding of any other
version is refused with a 503 and counted in ``fashionrec_stale_embeddings``; stored vectors are read by the key
(item_id, the snapshot's model_version), so a shared online store holding two versions during a rollout serves
each transformer its own. A request in flight keeps the snapshot it started with across a reload.

Live catalogue: with ``--catalog_changes`` (fashionrec.data.changes), a background thread polls the change log
and applies additions (vectors read from Feast for the snapshot's own version) and removals to every loaded index
without a restart; a reloaded snapshot replays the log before it serves. A hit whose attributes are gone from the
online store (a product removed a moment ago) is never returned.

Canary: with ``--canary_dir`` (a folder like the stable one: ``index/``, ``feature_repo/`` and ``canary.json`` with
its traffic ``share``), that share of requests is answered by the canary snapshot. On a cluster KServe splits the
traffic between transformer revisions instead and each holds one snapshot; locally the rollout (fashionrec.deploy)
uses this. Per-version request counts and latencies (``fashionrec_model_requests``, ``fashionrec_model_request_seconds``)
are what the rollout compares. ``POST /v2/repository/models/<name>/load`` reloads both from their folders (flip them,
e.g. as symlinks, then call it) without dropping a request.

Shoppers' feedback: every answer carries its request id (the client's, or a new one) and model version, and
``POST /v2/models/<name>/feedback`` takes the impressions, clicks and purchases clients report about them
(fashionrec.serving.feedback), counted per version and written to ``--event_log``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from kserve import InferInput, InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput, ServerNotReady
from kserve.model_repository import ModelRepository

from fashionrec.config import (
    ATTRIBUTE_COLUMNS,
    CATALOG_POLL_SECONDS,
    DEFAULT_TOP_K,
    EXCLUDE_PARAMETER,
    FAMILY_CAP_PARAMETER,
    FILTER_PARAMETER,
    INPUT_IMAGE,
    INPUT_ITEM_ID,
    LABEL_COLUMN,
    MAX_TOP_K,
    MMR_PARAMETER,
    MONITOR_SECONDS,
    OUTPUT_ITEM_ID,
    OUTPUT_SCORE,
    RERANK_DEPTH,
    RERANK_VOTERS,
    RERANK_WEIGHT,
    SNAPSHOT_FEATURE_REPO_DIR,
    SNAPSHOT_INDEX_DIR,
)
from fashionrec.data.changes import Change, ChangeLog
from fashionrec.data.imagefacts import image_stats
from fashionrec.drift.live import WINDOW, LiveMonitor
from fashionrec.drift.profile import ReferenceProfile
from fashionrec.imaging import ImageDecodeError, header_pixels, validate_images
from fashionrec.retrieval.attributes import FilterError, ItemFilter
from fashionrec.retrieval.diversity import family_capped, mmr_order
from fashionrec.retrieval.feast_store import OnlineFeatures, OnlineStoreUnavailable
from fashionrec.retrieval.index import ItemIndex
from fashionrec.retrieval.rerank import LabelVote, rerank
from fashionrec.serving.feedback import FeedbackCollector, add_feedback_route
from fashionrec.serving.metrics import publish_health, publish_monitoring, transformer_metrics
from fashionrec.serving.model_server import model_server_parser, run_model_server
from fashionrec.serving.no_torch import block_torch
from fashionrec.serving.predictor_client import Embeddings, PredictorClient, make_predictor
from fashionrec.serving.recall import RECALL_SAMPLE_SHARE, RecallWatch
from fashionrec.serving.responses import JsonBytesResponse
from fashionrec.serving.v2_inputs import image_payloads, item_ids
from fashionrec.storage import redact_urls

CANARY_FILE = "canary.json"  # in --canary_dir: {"share": 0.1}
CPU_WORKERS = 2  # threads for decoding, search and Feast reads: bounded, so a burst queues instead of thrashing
# Images of a request that decode to at most this many pixels together (a few catalogue thumbnails; ~0.25 ms with
# their monitored statistics) are checked on the event loop: handing them to a thread and back costs as much.
INLINE_DECODE_PIXELS = 100_000
T = TypeVar("T")
SNAPSHOT_CHECK_ITEMS = 64  # items whose Feast vectors of the index's model version must exist at load
# With a diversity option, this many times top_k candidates are searched, so that capping families or trading
# similarity for variety still leaves top_k answers.
DIVERSE_DEPTH_FACTOR = 5
logger = logging.getLogger(__name__)


def parameter(parameters: dict[str, Any] | None, name: str) -> Any:
    """A v2 parameter's value (None when absent), over REST or gRPC."""
    value: Any = (parameters or {}).get(name)
    if hasattr(value, "WhichOneof"):  # over gRPC: an InferParameter message, one of bool/int64/string/double
        choice = value.WhichOneof("parameter_choice")
        value = getattr(value, choice) if choice else None
    return value


def parse_top_k(parameters: dict[str, Any] | None) -> int:
    top_k = parse_count(parameters, "top_k", DEFAULT_TOP_K)
    assert top_k is not None
    return top_k


def parse_count(parameters: dict[str, Any] | None, name: str, default: int | None) -> int | None:
    """An integer parameter between 1 and MAX_TOP_K (``default`` when absent)."""
    value = parameter(parameters, name)
    if value is None:
        return default
    message = f"{name} must be an integer between 1 and {MAX_TOP_K}, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidInput(message)
    try:
        top_k = int(value)
        exact = top_k == float(value)
    except (ValueError, OverflowError) as exc:
        raise InvalidInput(message) from exc
    if not exact or not 1 <= top_k <= MAX_TOP_K:
        raise InvalidInput(message)
    return top_k


def parse_mmr(parameters: dict[str, Any] | None) -> float | None:
    """The MMR trade-off (None: off); a number in [0, 1], 1 being similarity alone."""
    value = parameter(parameters, MMR_PARAMETER)
    if value is None:
        return None
    try:
        lam = float(value) if not isinstance(value, bool) else None
    except ValueError:
        lam = None
    if lam is None or not 0.0 <= lam <= 1.0:
        raise InvalidInput(f"{MMR_PARAMETER} must be a number between 0 and 1, got {value!r}")
    return lam


def parse_filter(parameters: dict[str, Any] | None) -> ItemFilter:
    try:
        return ItemFilter.parse(parameter(parameters, FILTER_PARAMETER), parameter(parameters, EXCLUDE_PARAMETER))
    except FilterError as exc:
        raise InvalidInput(str(exc)) from exc


class Query(InferRequest):
    """A validated request, as preprocess hands it to predict (in-process only; never serialised)."""

    def __init__(self, source: InferRequest, top_k: int, ids: list[int] | None = None, images: list[bytes] | None = None,
                 encoded: list[str] | None = None) -> None:  # fmt: skip
        name, size = (INPUT_ITEM_ID, len(ids)) if ids is not None else (INPUT_IMAGE, len(images or []))
        super().__init__(
            model_name=source.model_name,
            infer_inputs=[InferInput(name, [size], "INT64" if ids is not None else "BYTES")],
            request_id=source.id or uuid.uuid4().hex,  # every answer names its request: feedback events refer to it
        )
        self.top_k = top_k
        parameters = source.parameters
        self.item_filter = parse_filter(parameters)
        self.family_cap = parse_count(parameters, FAMILY_CAP_PARAMETER, None)
        self.mmr_lambda = parse_mmr(parameters)
        self.ids = ids
        self.images = images or []
        self.encoded = encoded
        self.stats: list[dict[str, float]] | None = None  # the monitored image statistics, when monitoring


class RecommendationResponse(JsonBytesResponse):
    """The transformer's answer, encoded once by orjson (fashionrec.serving.responses), the encoding timed."""

    def to_rest(self) -> tuple[bytes, None]:
        started = time.perf_counter()
        encoded = super().to_rest()
        transformer_metrics().respond_seconds.observe(time.perf_counter() - started)
        return encoded


@dataclass(frozen=True)
class ServingSnapshot:
    """One model version's index and the Feast store holding its vectors: always swapped together."""

    index: ItemIndex
    features: OnlineFeatures
    applied: set[str] = field(default_factory=set)  # catalogue changes already in the live index
    profile: ReferenceProfile | None = None  # the model's reference profile (index/reference/), when it has one
    monitor: LiveMonitor | None = None  # the window of recent image queries, when monitoring
    # Added items whose vector of this version is not in the online store yet, by change: retried at every poll
    # until it lands (reencode_additions writes it), dropped when a later change removes the item.
    waiting: dict[str, set[int]] = field(default_factory=dict)

    @property
    def model_version(self) -> str:
        return self.index.meta.model_version

    def apply(self, change: Change) -> None:
        """Apply one catalogue change to the live index (vectors of this snapshot's model version only). An addition
        whose vector of this version is not in the store yet stays unapplied for those items: the next poll retries
        them (counted once as no_vector, and in the waiting gauge until they land)."""
        metrics = transformer_metrics()
        counter = metrics.catalog_changes
        ids = np.asarray(change.item_ids, dtype=np.int64)
        if change.action == "remove":
            removed = self.index.remove(ids)
            counter.labels(model_version=self.model_version, action="remove", outcome="applied").inc(removed)
            for name, items in list(self.waiting.items()):  # a removed product's older addition must not land later
                items.difference_update(change.item_ids)
                if not items:
                    del self.waiting[name]
                    self.applied.add(name)
        else:
            retry = change.name in self.waiting
            ids = np.asarray(sorted(self.waiting[change.name]), dtype=np.int64) if retry else ids
            vectors = self.features.embeddings([int(i) for i in ids], self.model_version)
            found = [n for n, vector in enumerate(vectors) if vector is not None]
            if found:  # with their attributes, so that a filter sees a product the moment it is searchable
                rows = self.features.attributes([int(ids[n]) for n in found])
                self.index.upsert(ids[found], np.stack([vectors[n] for n in found]), rows)  # type: ignore[misc]
            counter.labels(model_version=self.model_version, action="add", outcome="applied").inc(len(found))
            missing = {int(ids[n]) for n, vector in enumerate(vectors) if vector is None}
            if missing and not retry:
                counter.labels(model_version=self.model_version, action="add", outcome="no_vector").inc(len(missing))
            if missing:
                self.waiting[change.name] = missing
                metrics.catalog_waiting.labels(model_version=self.model_version).set(self.waiting_items)
                return  # not applied: the next catch_up reads the change again
            self.waiting.pop(change.name, None)
            metrics.catalog_waiting.labels(model_version=self.model_version).set(self.waiting_items)
        self.applied.add(change.name)

    @property
    def waiting_items(self) -> int:
        """Added items this snapshot has no vector of yet."""
        return sum(len(items) for items in self.waiting.values())

    def catch_up(self, log: ChangeLog) -> int:
        """Apply every change of the log this snapshot has not applied yet, oldest first; returns how many. A file
        that is not a change is skipped once (logged, counted as outcome "invalid"), never retried."""
        bad: set[str] = set()
        pending = log.changes(skip=self.applied, bad=bad)
        for name in sorted(bad):
            logger.error("skipping %s/%s: not a catalogue change", redact_urls(log.uri), name)
            counter = transformer_metrics().catalog_changes
            counter.labels(model_version=self.model_version, action="unknown", outcome="invalid").inc()
        self.applied.update(bad)
        for change in pending:
            self.apply(change)
        return len(pending)

    @classmethod
    def load(cls, index_dir: Path, feature_repo: Path) -> ServingSnapshot:
        """Load both from the folders the paths point at now (a hot swap may flip them meanwhile), and refuse a pair
        whose Feast vectors are not of the index's model version."""
        index_dir, feature_repo = resolve_together(index_dir, feature_repo)
        snapshot = cls(
            ItemIndex.load(index_dir),
            OnlineFeatures(feature_repo),
            profile=ReferenceProfile.of_index(index_dir),
        )
        # Products removed from the catalogue since the index was built have no rows at all: only the others count.
        sample = snapshot.features.present([int(i) for i in snapshot.index.item_ids(limit=SNAPSHOT_CHECK_ITEMS)])
        missing = [
            i for i, v in zip(sample, snapshot.features.embeddings(sample, snapshot.model_version), strict=True) if v is None
        ]
        if missing:
            raise ValueError(
                f"the online store of {feature_repo} has no vectors of model version {snapshot.model_version} for "
                f"items {missing} of its index ({index_dir}): materialize that version before serving it"
            )
        return snapshot


def resolve_together(index_dir: Path, feature_repo: Path) -> tuple[Path, Path]:
    """The real folders behind the two paths. Paths in one folder (live/current/{index,feature_repo}) are resolved
    through it once, so that a flip of that folder between the two cannot pair two versions."""
    if index_dir.parent == feature_repo.parent:
        bundle = index_dir.parent.resolve()
        return (bundle / index_dir.name).resolve(), (bundle / feature_repo.name).resolve()
    return index_dir.resolve(), feature_repo.resolve()


@dataclass(frozen=True)
class Routing:
    """What answers requests: the stable snapshot, and a canary with its share of the traffic (or none)."""

    stable: ServingSnapshot
    canary: ServingSnapshot | None = None
    canary_share: float = 0.0

    @property
    def snapshots(self) -> list[ServingSnapshot]:
        return [self.stable] if self.canary is None else [self.stable, self.canary]

    def choose(self) -> ServingSnapshot:
        if self.canary is not None and random.random() < self.canary_share:
            return self.canary
        return self.stable

    @classmethod
    def load(cls, index_dir: Path, feature_repo: Path, canary_dir: Path | None) -> Routing:
        stable = ServingSnapshot.load(index_dir, feature_repo)
        if canary_dir is None or not (canary_dir / CANARY_FILE).exists():
            return cls(stable)
        bundle = canary_dir.resolve()  # once: a flip of the canary link meanwhile cannot pair two versions
        share = float(json.loads((bundle / CANARY_FILE).read_text(encoding="utf-8"))["share"])
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"canary share must be between 0 and 1, got {share}")
        canary = ServingSnapshot.load(bundle / SNAPSHOT_INDEX_DIR, bundle / SNAPSHOT_FEATURE_REPO_DIR)
        if canary.model_version == stable.model_version:
            return cls(stable)
        return cls(stable, canary, share)


class FashionrecTransformer(Model):
    def __init__(
        self,
        name: str,
        index_dir: Path,
        feature_repo: Path,
        predictor: PredictorClient | None = None,
        canary_dir: Path | None = None,
        catalog_changes: str | None = None,
        catalog_poll_seconds: float = CATALOG_POLL_SECONDS,
        monitor_window: int = WINDOW,
        monitor_seconds: float = MONITOR_SECONDS,
        request_log: str | None = None,
        rerank: LabelVote | None = None,
        event_log: str | None = None,
        predictor_key_file: Path | None = None,
        recall_sample_share: float = RECALL_SAMPLE_SHARE,
    ) -> None:
        super().__init__(name)
        self.recall_watch = RecallWatch(recall_sample_share)  # sampled searches re-run exactly, off the request path
        self._recall_thread: threading.Thread | None = None
        self.feedback = FeedbackCollector(event_log)  # shoppers' events; counted always, logged with an event_log
        self._feedback_thread: threading.Thread | None = None
        self.rerank = rerank  # None: answers in plain similarity order
        self.index_dir = index_dir
        self.feature_repo = feature_repo
        self.canary_dir = canary_dir
        self.predictor = predictor
        self.predictor_key_file = predictor_key_file  # a local TorchServe's keys: its inference API needs one
        self.routing: Routing | None = None
        self._closing: asyncio.Task[None] | None = None
        self.cpu_pool = ThreadPoolExecutor(max_workers=CPU_WORKERS, thread_name_prefix="fashionrec-cpu")
        self.change_log = ChangeLog(catalog_changes) if catalog_changes else None
        self.catalog_poll_seconds = catalog_poll_seconds
        self._stopping = threading.Event()
        self._poller: threading.Thread | None = None
        self.monitor_window = monitor_window  # 0: no live monitoring
        self.monitor_seconds = monitor_seconds
        self.request_log = request_log
        self._monitor_thread: threading.Thread | None = None
        # Monitors of snapshots swapped out, with request-log lines to write: flushed at the swap and by the
        # monitor thread until a flush succeeds (a request in flight may still record into one after the swap).
        self._retired: list[LiveMonitor] = []
        self._retired_lock = threading.Lock()

    def load(self) -> bool:
        import faiss

        faiss.omp_set_num_threads(1)  # searches are tiny; OpenMP threads only contend with the event loop
        self._install(self._load_routing())
        if self.change_log is not None and self._poller is None:
            self._poller = threading.Thread(target=self._poll_changes, name="fashionrec-catalog", daemon=True)
            self._poller.start()
        if self.feedback.buffer is not None and self._feedback_thread is None:
            self._feedback_thread = threading.Thread(
                target=self.feedback.run, args=(self._stopping,), name="fashionrec-feedback", daemon=True
            )
            self._feedback_thread.start()
        if self.recall_watch.share > 0 and self._recall_thread is None:
            self._recall_thread = threading.Thread(
                target=self.recall_watch.run, args=(self._stopping,), name="fashionrec-recall", daemon=True
            )
            self._recall_thread.start()
        if self.monitor_window and self._monitor_thread is None:
            transformer_metrics().monitor_interval.set(self.monitor_seconds)
            self._monitor_thread = threading.Thread(target=self._monitor, name="fashionrec-monitor", daemon=True)
            self._monitor_thread.start()
        self.ready = True
        return self.ready

    def _load_routing(self) -> Routing:
        routing = Routing.load(self.index_dir, self.feature_repo, self.canary_dir)
        if self.change_log is not None:
            for snapshot in routing.snapshots:  # a snapshot serves the catalogue as it is now, not as it was built
                snapshot.catch_up(self.change_log)
        if self.monitor_window:
            routing = dataclasses.replace(
                routing,
                stable=self._monitored(routing.stable),
                canary=self._monitored(routing.canary) if routing.canary is not None else None,
            )
        return routing

    def _monitored(self, snapshot: ServingSnapshot) -> ServingSnapshot:
        if snapshot.profile is None:
            logger.warning("the index of %s has no reference profile: no live monitoring", snapshot.model_version)
            return snapshot
        dropped = transformer_metrics().request_log_dropped.inc
        monitor = LiveMonitor(snapshot.profile, self.monitor_window, self.request_log, on_dropped=dropped)
        return dataclasses.replace(snapshot, monitor=monitor)

    def _monitor(self) -> None:
        """Every monitor_seconds, one round of monitoring (``monitor_once``)."""
        while not self._stopping.wait(self.monitor_seconds):
            self.monitor_once()

    def monitor_once(self) -> None:
        """Test each snapshot's window against its reference (writing its request-log lines first; the stable
        one's health sets the gauges), write what swapped-out snapshots still hold, and publish when each step last
        succeeded: a monitor that keeps failing goes stale (FashionrecMonitorStale), never silent."""
        routing = self.routing
        served = [s.monitor for s in routing.snapshots if s.monitor is not None] if routing is not None else []
        for snapshot in routing.snapshots if routing is not None else []:
            if snapshot.monitor is None:
                continue
            try:
                health = snapshot.monitor.evaluate()
            except Exception:  # a bad window must never take serving down: log it, try the next one
                logger.exception("evaluating the monitoring window of %s failed", snapshot.model_version)
                continue
            if health is not None and snapshot is routing.stable:  # type: ignore[union-attr]
                publish_health(health)
        retired = self._flush_retired(release=True)
        # A failed evaluation leaves its monitor's evaluated_at behind: the oldest of them is what is published.
        publish_monitoring(served, served + retired, self.request_log is not None)

    def _retire(self, old: Routing) -> None:
        """The monitors of a routing no longer served: their lines are written before they are let go."""
        with self._retired_lock:
            self._retired += [s.monitor for s in old.snapshots if s.monitor is not None]

    def _flush_retired(self, release: bool) -> list[LiveMonitor]:
        """Write the request-log lines the swapped-out snapshots hold; with ``release``, let go of each monitor
        whose write succeeded. Returns the monitors still held."""
        with self._retired_lock:
            retired = list(self._retired)
        kept = []
        for monitor in retired:
            try:
                monitor.flush()
            except Exception:  # the storage is down: the monitor thread tries again (its drops are counted)
                logger.exception("writing the request log of the swapped-out %s failed", monitor.profile.model_version)
                kept.append(monitor)
            else:
                if not release:
                    kept.append(monitor)
        with self._retired_lock:
            self._retired = [m for m in self._retired if m in kept or m not in retired]  # and those retired meanwhile
            return list(self._retired)

    def _poll_changes(self) -> None:
        """Apply new catalogue changes to every loaded snapshot until stopped; a failed poll is retried."""
        assert self.change_log is not None
        while not self._stopping.wait(self.catalog_poll_seconds):
            routing = self.routing
            if routing is None:
                continue
            try:
                for snapshot in routing.snapshots:
                    snapshot.catch_up(self.change_log)
                transformer_metrics().index_items.set(routing.stable.index.count)
            except Exception:  # storage or online store unreachable for a moment: keep serving, try again
                logger.exception("applying catalogue changes from %s failed; retrying", redact_urls(self.change_log.uri))

    async def reload(self) -> None:
        """Hot swap: load the snapshots now at their folders off the event loop, then switch in one step."""
        routing = await asyncio.to_thread(self._load_routing)
        old = self.routing
        self._install(routing)
        transformer_metrics().swaps.inc()
        if old is not None:  # the old snapshots' pending request-log lines would otherwise be lost with them
            self._retire(old)
            await asyncio.to_thread(self._flush_retired, False)

    def _install(self, routing: Routing) -> None:
        self.routing = routing  # one assignment on the event loop thread: no request sees a half-installed routing
        metrics = transformer_metrics()
        meta = routing.stable.index.meta
        metrics.index_items.set(routing.stable.index.count)
        metrics.model.info(
            {"model_version": meta.model_version, "index_type": meta.index_type, "dataset_digest": meta.dataset_digest}
        )
        metrics.canary_share.set(routing.canary_share if routing.canary else 0.0)
        for snapshot in routing.snapshots:
            self.recall_watch.publish_target(snapshot.index)

    def stop(self) -> None:
        """KServe's shutdown (SIGTERM on a rollout): not ready, and the pooled predictor connections are closed."""
        super().stop()
        self._stopping.set()
        if self.routing is not None:
            self._retire(self.routing)  # the request log keeps the last queries too
        self._flush_retired(release=True)
        self.feedback.flush()  # and the event log the last events
        self.cpu_pool.shutdown(wait=False)
        predictor, self.predictor = self.predictor, None
        if predictor is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(predictor.close())
        else:
            self._closing = loop.create_task(predictor.close())  # ModelServer.stop runs on the event loop

    @property
    def model_version(self) -> str:
        """The stable model version."""
        assert self.routing is not None
        return self.routing.stable.model_version

    @staticmethod
    def check_version(snapshot: ServingSnapshot, versions: set[str], source: str) -> None:
        """Refuse vectors of any model version other than the snapshot's (a predictor or a store of another rollout)."""
        if versions != {snapshot.model_version}:
            transformer_metrics().stale.labels(source=source).inc()
            raise ServerNotReady(
                f"the {source} gave vectors of model_version(s) {sorted(versions)} for a query answered by model "
                f"{snapshot.model_version}; refusing to mix models"
            )

    @staticmethod
    def refuse_missing(snapshot: ServingSnapshot, missing: list[int]) -> None:
        """Items without a vector of the snapshot's version: unknown products are the client's mistake (400); a
        known product (it has attributes) without one means this version's vectors are not all in the store (503)."""
        known = snapshot.features.present(missing)
        if known:
            transformer_metrics().stale.labels(source="feast").inc()
            raise ServerNotReady(
                f"the online store has no vectors of model version {snapshot.model_version} for item_id(s) {known[:10]}"
            )
        raise InvalidInput(f"unknown item_id(s) {missing[:10]}: not in the online store")

    # v2 model metadata
    def get_input_types(self) -> list[dict[str, Any]]:
        return [
            {"name": INPUT_IMAGE, "datatype": "BYTES", "shape": [-1]},
            {"name": INPUT_ITEM_ID, "datatype": "INT64", "shape": [-1]},
        ]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [
            {"name": OUTPUT_ITEM_ID, "datatype": "INT64", "shape": [-1, -1]},
            {"name": OUTPUT_SCORE, "datatype": "FP32", "shape": [-1, -1]},
            *({"name": column, "datatype": "BYTES", "shape": [-1, -1]} for column in ATTRIBUTE_COLUMNS),
        ]

    async def preprocess(self, payload: InferRequest | dict[str, Any], headers: dict[str, str] | None = None) -> Query:
        if not isinstance(payload, InferRequest):
            raise InvalidInput("use the v2 protocol: POST /v2/models/<name>/infer")
        top_k = parse_top_k(payload.parameters)
        names = [i.name for i in payload.inputs]
        if len(names) != 1 or names[0] not in (INPUT_IMAGE, INPUT_ITEM_ID):
            raise InvalidInput(f"send exactly one input, '{INPUT_IMAGE}' (BYTES) or '{INPUT_ITEM_ID}' (INT64); got {names}")
        tensor = payload.inputs[0]
        if tensor.name == INPUT_ITEM_ID:
            return Query(payload, top_k, ids=item_ids(tensor))
        images, encoded = image_payloads(tensor)
        query = Query(payload, top_k, images=images, encoded=encoded)
        monitored = self.routing is not None and self.routing.stable.monitor is not None
        try:
            if header_pixels(images) <= INLINE_DECODE_PIXELS:  # a thumbnail decodes faster than a thread hand-off
                query.stats = validate_and_measure(images, monitored)
            else:
                query.stats = await self.off_loop(validate_and_measure, images, monitored)
        except ImageDecodeError as exc:
            raise InvalidInput(str(exc)) from exc
        return query

    async def off_loop(self, work: Callable[..., T], *args: Any) -> T:
        """CPU work (image decoding, FAISS search, Feast reads) on the bounded pool, so that one heavy request never
        stalls the event loop that answers every other request and the health probes."""
        return await asyncio.get_running_loop().run_in_executor(self.cpu_pool, work, *args)

    async def encode(self, query: Query, model_version: str) -> Embeddings:
        """The predictor hop: embeddings of the query's images by the encoder of ``model_version``."""
        if self.predictor is None:
            config = self.predictor_config
            if config is None or not config.predictor_host:
                raise ServerNotReady("no predictor configured (--predictor_host)")
            self.predictor = make_predictor(
                config.protocol, config.predictor_host, float(config.timeout or 30), key_file=self.predictor_key_file
            )
        return await self.predictor.embed(query.images, query.encoded, query.id, model_version)

    async def predict(
        self, payload: Query, headers: dict[str, str] | None = None, response_headers: dict[str, str] | None = None
    ) -> InferResponse:
        assert self.routing is not None
        snapshot = self.routing.choose()
        metrics = transformer_metrics()
        started = time.perf_counter()
        outcome = "server_error"
        try:
            response = await self._predict(payload, snapshot)
            outcome = "ok"
            return response
        except InvalidInput:
            outcome = "client_error"
            raise
        except OnlineStoreUnavailable as exc:  # Redis restarting: 503 with the reason, the client retries
            raise ServerNotReady(str(exc)) from exc
        finally:
            metrics.version_requests.labels(model_version=snapshot.model_version, outcome=outcome).inc()
            if outcome == "ok":
                metrics.version_seconds.labels(model_version=snapshot.model_version).observe(time.perf_counter() - started)

    async def _predict(self, payload: Query, snapshot: ServingSnapshot) -> InferResponse:
        metrics = transformer_metrics()
        if payload.ids is not None:  # one trip to the CPU pool: look the vectors up, search, enrich
            return await self.off_loop(self._answer_items, payload, snapshot)
        started = time.perf_counter()
        embeddings = await self.encode(payload, snapshot.model_version)
        metrics.predictor_seconds.observe(time.perf_counter() - started)
        self.check_version(snapshot, {str(embeddings.model_version)}, "predictor")
        queries = embeddings.vectors
        if queries.shape != (len(payload.images), snapshot.index.meta.dimension):
            raise ServerNotReady(f"the encoder returned embeddings of shape {list(queries.shape)}")
        return await self.off_loop(self._answer, payload, snapshot, queries, [None] * len(queries))

    def _answer_items(self, query: Query, snapshot: ServingSnapshot) -> InferResponse:
        """More like this item: the item's vector from the snapshot's index (the very vectors it searches, so of
        its model version); from the online store only for items the index lacks (added since the last catalogue
        poll), which also tells an unknown item (400) from a store missing this version's vectors (503). An item
        removed from the catalogue since the last poll is refused too (it has no attributes any more)."""
        assert query.ids is not None
        vectors = snapshot.index.vectors_of(query.ids)
        absent = [i for i, v in zip(query.ids, vectors, strict=True) if v is None]
        if absent:
            started = time.perf_counter()
            stored = dict(zip(absent, snapshot.features.embeddings(absent, snapshot.model_version), strict=True))
            transformer_metrics().feast_seconds.labels(read="embeddings").observe(time.perf_counter() - started)
            vectors = [stored[i] if v is None else v for i, v in zip(query.ids, vectors, strict=True)]
            missing = [i for i in absent if stored[i] is None]
            if missing:
                self.refuse_missing(snapshot, missing)
        exclude: list[int | None] = list(query.ids)  # "more like this item": the item itself is not a hit
        return self._answer(query, snapshot, np.stack([v for v in vectors if v is not None]), exclude, query.ids)

    def _answer(
        self,
        query: Query,
        snapshot: ServingSnapshot,
        queries: np.ndarray,
        exclude: list[int | None],
        queried: list[int] | None = None,
    ) -> InferResponse:
        """Search, re-rank and enrich. ``queried``: catalogue items asked about, whose attributes are read with the
        hits' (one store read) to refuse those removed from the catalogue."""
        metrics = transformer_metrics()
        top_k = query.top_k
        item_attributes = snapshot.index.attributes
        vote = self.rerank if item_attributes is not None else None
        if query.family_cap is not None and item_attributes is None:
            raise InvalidInput(f"{FAMILY_CAP_PARAMETER} needs an index built with item families: rebuild it")
        diverse = query.family_cap is not None or query.mmr_lambda is not None
        # +1: room for the query's own item; more for the vote and for diversity to choose from
        depth = max(top_k + 1, vote.depth if vote else 0, top_k * DIVERSE_DEPTH_FACTOR if diverse else 0)
        depth = max(1, min(depth, snapshot.index.count))
        started = time.perf_counter()
        if query.item_filter.active:  # one call per batch; filtered inside the search, never after it
            try:
                scores, hits = snapshot.index.search_filtered(queries, depth, query.item_filter)
            except ValueError as exc:
                raise InvalidInput(str(exc)) from exc
        else:
            scores, hits = snapshot.index.search(queries, depth)
        metrics.faiss_seconds.observe(time.perf_counter() - started)
        self.recall_watch.offer(snapshot.index, queries, hits, query.item_filter)
        shortlists = []  # per query, its best top_k + 1 candidates: one spare for a product removed meanwhile
        for row in range(len(queries)):
            usable = (hits[row] != -1) & (hits[row] != (-1 if exclude[row] is None else exclude[row]))
            row_hits, row_scores = hits[row][usable], scores[row][usable]
            relevance = row_scores  # what the vote and diversity order by; the answer keeps the similarities
            if vote and item_attributes is not None:
                order, relevance = rerank(item_attributes.codes_of(LABEL_COLUMN, row_hits), row_scores, vote)
                row_hits, row_scores = row_hits[order], row_scores[order]
            if diverse:
                order = self.diversified(query, snapshot, row_hits, relevance)
                row_hits, row_scores = row_hits[order], row_scores[order]
            shortlists.append(list(zip(row_scores[: top_k + 1].tolist(), row_hits[: top_k + 1].tolist(), strict=True)))
        found = sorted({int(h) for shortlist in shortlists for _, h in shortlist} | set(queried or []))
        started = time.perf_counter()
        attributes = snapshot.features.attributes(found) if found else {c: [] for c in ATTRIBUTE_COLUMNS}
        metrics.feast_seconds.labels(read="attributes").observe(time.perf_counter() - started)
        position = {item: n for n, item in enumerate(found)}
        removed = [i for i in queried or [] if attributes[ATTRIBUTE_COLUMNS[0]][position[i]] is None]
        if removed:
            self.refuse_missing(snapshot, removed)
        # A product without attributes was removed from the catalogue (its index entry goes at the next poll).
        gone = {item for item, title in zip(found, attributes[ATTRIBUTE_COLUMNS[0]], strict=True) if title is None}
        item_ids = np.full((len(queries), top_k), -1, dtype=np.int64)
        item_scores = np.zeros((len(queries), top_k), dtype=np.float32)
        for row, shortlist in enumerate(shortlists):
            keep = [(score, hit) for score, hit in shortlist if hit not in gone]
            for col, (score, hit) in enumerate(keep[:top_k]):
                item_ids[row, col], item_scores[row, col] = hit, score
        shape = list(item_ids.shape)
        flat_ids = item_ids.ravel().tolist()  # v2 tensors travel flattened, row-major, in JSON and in gRPC alike
        outputs = [
            InferOutput(OUTPUT_ITEM_ID, shape, "INT64", flat_ids),
            InferOutput(OUTPUT_SCORE, shape, "FP32", item_scores.ravel().tolist()),
        ]
        if snapshot.monitor is not None and query.stats is not None:
            snapshot.monitor.record(queries, query.stats, item_ids, item_scores[:, 0], query.id or "")
        elif snapshot.monitor is not None and queried is not None and len(queried) == 1:
            # One item per request: the shoppers' clicks on this answer (by request id) can be replayed offline.
            snapshot.monitor.record_item(query.id or "", queried[0], item_ids[0])
        for column in ATTRIBUTE_COLUMNS:
            values = attributes[column]
            outputs.append(InferOutput(column, shape, "BYTES", ["" if i == -1 else values[position[i]] or "" for i in flat_ids]))
        return RecommendationResponse(
            response_id=query.id or "", model_name=self.name, model_version=snapshot.model_version, infer_outputs=outputs
        )

    @staticmethod
    def diversified(query: Query, snapshot: ServingSnapshot, hits: np.ndarray, relevance: np.ndarray) -> np.ndarray:
        """The order (positions into ``hits``, best first by ``relevance``: the similarity with the vote's bonus)
        after the query's MMR trade-off, then its family cap."""
        order = np.arange(len(hits))
        if query.mmr_lambda is not None and len(hits):
            found = snapshot.index.vectors_of(hits.tolist())  # None: removed a moment ago (dropped later anyway)
            vectors = np.stack([np.zeros(snapshot.index.meta.dimension, np.float32) if v is None else v for v in found])
            order = mmr_order(relevance, vectors, query.mmr_lambda, query.top_k + 1)
        if query.family_cap is not None and snapshot.index.attributes is not None:
            order = order[family_capped(snapshot.index.attributes.families_of(hits[order]), query.family_cap)]
        return order


def validate_and_measure(images: list[bytes], measure: bool) -> list[dict[str, float]] | None:
    """Refuse undecodable or oversized images (ImageDecodeError); with ``measure``, the monitored statistics of each."""

    decoded = validate_images(images)
    return [image_stats(image) for image in decoded] if measure else None


class TransformerRepository(ModelRepository):
    """KServe's model repository extension: ``POST /v2/repository/models/<name>/load`` hot-swaps the snapshot."""

    async def load(self, name: str) -> bool:
        model = self.get_model(name)
        if not isinstance(model, FashionrecTransformer):
            raise KeyError(f"no model named {name!r}")
        await model.reload()
        return True


def main(argv: list[str] | None = None) -> None:
    """Run the transformer under kserve.ModelServer with KServe's standard arguments plus index and Feast paths."""
    block_torch()  # as in the transformer's image, which has no torch (fashionrec.serving.no_torch)
    parser = model_server_parser(__doc__)
    parser.add_argument("--index_dir", type=Path, required=True, help="folder with items.faiss and index.json")
    parser.add_argument("--feature_repo", type=Path, required=True, help="Feast repo folder (feature_store.yaml)")
    parser.add_argument(
        "--predictor_key_file",
        type=Path,
        default=None,
        help="a local TorchServe's key_file.json: its inference key goes with every call (the cluster's has no token auth)",
    )
    parser.add_argument(
        "--canary_dir", type=Path, default=None, help=f"a canary's index/, feature_repo/ and {CANARY_FILE} (local rollouts)"
    )
    parser.add_argument(
        "--catalog_changes", default=None, help="catalogue change log to apply live (a folder, gs:// or s3://); none: off"
    )
    parser.add_argument(
        "--catalog_poll_seconds", type=float, default=CATALOG_POLL_SECONDS, help="how often the change log is read"
    )
    parser.add_argument(
        "--monitor_window", type=int, default=WINDOW, help="image queries in the live drift window (0: no monitoring)"
    )
    parser.add_argument("--monitor_seconds", type=float, default=MONITOR_SECONDS, help="how often the window is tested for drift")
    parser.add_argument(
        "--request_log",
        default=None,
        help="where image queries are logged (embeddings, stats, hits; no photos): a .jsonl file, or a folder, gs:// "
        "or s3:// for part files",
    )
    parser.add_argument(
        "--rerank_voters",
        type=int,
        default=RERANK_VOTERS,
        help="nearest candidates that vote on the query's articleType; candidates gain by their type's share (0: off)",
    )
    parser.add_argument("--rerank_depth", type=int, default=RERANK_DEPTH, help="candidates searched and re-ordered by the vote")
    parser.add_argument(
        "--rerank_weight", type=float, default=RERANK_WEIGHT, help="a candidate's bonus per share of the vote its type has"
    )
    parser.add_argument(
        "--event_log",
        default=None,
        help="where shoppers' feedback events are logged (no photos, no personal data): a .jsonl file, or a folder, "
        "gs:// or s3:// for part files; none: counted in the metrics only",
    )
    parser.add_argument(
        "--recall_sample_share",
        type=float,
        default=RECALL_SAMPLE_SHARE,
        help="share of searches re-run as exact searches off the request path to publish the index's live recall (0: off)",
    )
    args, _ = parser.parse_known_args(argv)
    model = FashionrecTransformer(
        args.model_name,
        index_dir=args.index_dir,
        feature_repo=args.feature_repo,
        canary_dir=args.canary_dir,
        catalog_changes=args.catalog_changes,
        catalog_poll_seconds=args.catalog_poll_seconds,
        monitor_window=args.monitor_window,
        monitor_seconds=args.monitor_seconds,
        request_log=args.request_log,
        rerank=LabelVote(args.rerank_voters, args.rerank_depth, args.rerank_weight) if args.rerank_voters > 0 else None,
        event_log=args.event_log,
        predictor_key_file=args.predictor_key_file,
        recall_sample_share=args.recall_sample_share,
    )
    run_model_server(
        [model],
        args,
        registered_models=TransformerRepository(),
        add_routes=lambda app: add_feedback_route(app, model.name, model.feedback, model.off_loop),
    )


if __name__ == "__main__":
    main()
