"""The ``kserve`` rollout target: the InferenceService on a cluster, driven through the Kubernetes API.

Never mixing models (see fashionrec.serving.release): a release's model store serves the new encoder *and*
production's, each under its own name, and each transformer calls the encoder of its own index. So the predictor
rolls first, to 100% (additive: old transformers still find production's encoder in every new predictor pod), and
only then the transformer rolls as a canary (``spec.transformer.canaryTrafficPercent``, Serverless mode). Promote:
the canary takes 100%. Roll back: KServe pins the traffic to the previous rolled-out revision (percent 0), then the
spec is put back to production's release.

The status checks are pure functions of the InferenceService object, unit-tested on recorded statuses.

No lost updates: the objects go to the Kubernetes API as they are (plain dicts, through CustomObjectsApi), each write
carries the resourceVersion just read, so one landing in between is refused (409) rather than overwritten, and a
write is refused outright when the spec changed since this rollout's own last write (``metadata.generation`` moves
with the spec only, not with the controller's status updates). A rollout holds a lock on the InferenceService
itself, an annotation, so two deploys (a scheduled run and a drift-triggered one) never interleave and the
deployer Role needs nothing beyond the InferenceService it names.
"""

from __future__ import annotations

import copy
import os
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import yaml

from fashionrec.config import MODEL_NAME, SCRAPE_INTERVAL_S
from fashionrec.deploy.rollout import Servable, federated_metrics, wait_for
from fashionrec.serving.release import SERVING, Release, kserve_uri, read_release

STORAGE_ENV = "STORAGE_URI"  # the transformer container's: KServe's storage initializer fetches it into /mnt/models
# The manifests' placeholder before the first rollout (manifests/base/inferenceservice.yaml).
PLACEHOLDER_VERSION = "FIRST_MODEL_VERSION"
# Where the pipeline image holds the InferenceService the first rollout creates (the Dockerfile copies manifests/).
IMAGE_ISVC_TEMPLATE = "/opt/fashionrec/manifests/base/inferenceservice.yaml"


# The lock: "<owner> <unix expiry>" while a rollout runs; an expired one (a deploy that died) may be taken over.
LOCK_ANNOTATION = "fashionrec.io/rollout-lock"
KSERVE_GROUP, KSERVE_VERSION, KSERVE_PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"


class KServeRolloutError(RuntimeError):
    """The InferenceService did not get where the rollout needs it."""


class RolloutConflict(KServeRolloutError):
    """Someone else changed the InferenceService during this rollout, or holds its lock: nothing was overwritten."""


class InferenceServiceClient(Protocol):
    """InferenceServices as plain dicts: get, create and replace by name (InferenceServices below)."""

    def get(self, name: str, namespace: str) -> Any: ...
    def create(self, inferenceservice: dict[str, Any], namespace: str) -> Any: ...
    def replace(self, name: str, inferenceservice: dict[str, Any], namespace: str) -> Any: ...


class InferenceServices:
    """The Kubernetes API's InferenceService endpoints (CustomObjectsApi) for plain dicts. Not KServeClient's create
    and replace: they read attributes of KServe's generated model classes (``inferenceservice.api_version``), which
    the manifests' dicts do not have, and fetch a fresh resourceVersion when the object carries none."""

    def __init__(self, api: Any) -> None:
        self.api = api  # kubernetes.client.CustomObjectsApi

    def get(self, name: str, namespace: str) -> Any:
        return self.api.get_namespaced_custom_object(KSERVE_GROUP, KSERVE_VERSION, namespace, KSERVE_PLURAL, name)

    def create(self, inferenceservice: dict[str, Any], namespace: str) -> Any:
        return self.api.create_namespaced_custom_object(KSERVE_GROUP, KSERVE_VERSION, namespace, KSERVE_PLURAL, inferenceservice)

    def replace(self, name: str, inferenceservice: dict[str, Any], namespace: str) -> Any:
        return self.api.replace_namespaced_custom_object(
            KSERVE_GROUP, KSERVE_VERSION, namespace, KSERVE_PLURAL, name, inferenceservice
        )


def is_conflict(exc: Exception) -> bool:
    """The API server refused a write on a stale resourceVersion (409)."""
    return getattr(exc, "status", None) == 409 or "(409)" in str(exc)


# ---- reading an InferenceService ------------------------------------------------------------------------------


def storage_env(isvc: dict[str, Any]) -> str:
    """The transformer container's STORAGE_URI."""
    env = {e["name"]: e.get("value", "") for e in isvc["spec"]["transformer"]["containers"][0].get("env", [])}
    return str(env.get(STORAGE_ENV, ""))


def served_version(isvc: dict[str, Any] | None) -> str | None:
    """The model version of the release the transformer serves (``<root>/<version>/serving``); None before the first."""
    if isvc is None:
        return None
    uri = storage_env(isvc).rstrip("/")
    if not uri.endswith(f"/{SERVING}"):
        raise KServeRolloutError(f"the transformer's {STORAGE_ENV} {uri!r} is not a release's serving folder")
    version = uri.rsplit("/", 2)[-2]
    return None if version == PLACEHOLDER_VERSION else version


def serving_now(isvc: dict[str, Any] | None, releases_root: str) -> list[str]:
    """The model versions the InferenceService's transformer revisions serve now: its release's, and while a canary
    shares the traffic (or a rollback's pin drains it) also the stable revision's, which is the release's previous
    version (the production version whose encoder its model store holds). What catalogue updates encode for."""
    current = served_version(isvc)
    if current is None or isvc is None:
        return []
    versions = [current]
    if "canaryTrafficPercent" in isvc["spec"]["transformer"]:
        release = read_release(releases_root, current)
        if release is None:
            raise KServeRolloutError(f"the served release {current} is not published under {releases_root}")
        if release.previous_version and release.previous_version != current:
            versions.append(release.previous_version)
    return versions


def _revisions(isvc: dict[str, Any], component: str) -> tuple[str, str, dict[str, int]]:
    """A component's latest created and latest ready revision, and its traffic: percent by revision name."""
    status = dict(((isvc.get("status") or {}).get("components") or {}).get(component) or {})
    traffic = {str(t.get("revisionName")): int(t.get("percent") or 0) for t in status.get("traffic") or []}
    return str(status.get("latestCreatedRevision") or ""), str(status.get("latestReadyRevision") or ""), traffic


def _status_current(isvc: dict[str, Any]) -> bool:
    """The status describes the spec we last wrote (the controller has caught up with it)."""
    status = isvc.get("status") or {}
    return int(status.get("observedGeneration") or 0) >= int(isvc["metadata"].get("generation") or 0)


def _failed(isvc: dict[str, Any], component: str) -> str | None:
    """The reason a component's latest revision cannot become ready, if the controller says so."""
    for condition in (isvc.get("status") or {}).get("conditions") or []:
        kind = condition.get("type", "")
        if kind in (f"{component.capitalize()}Ready", f"{component.capitalize()}ConfigurationReady") and (
            condition.get("status") == "False" and condition.get("reason") in ("RevisionFailed", "RevisionMissing")
        ):
            return f"{kind}: {condition.get('reason')}: {condition.get('message', '')}"
    return None


def canary_serving(isvc: dict[str, Any], component: str, percent: int) -> bool:
    """The component's latest revision is ready and takes ``percent`` of the traffic, the previous one the rest."""
    if not _status_current(isvc):
        return False
    if reason := _failed(isvc, component):
        raise KServeRolloutError(reason)
    latest, ready, traffic = _revisions(isvc, component)
    return bool(latest) and ready == latest and traffic.get(latest) == percent


def rolled_out(isvc: dict[str, Any], component: str) -> bool:
    """The component's latest revision is ready and takes all the traffic."""
    return canary_serving(isvc, component, 100)


def pinned_to_previous(isvc: dict[str, Any], component: str) -> bool:
    """After ``canaryTrafficPercent: 0``: the latest revision takes no traffic."""
    if not _status_current(isvc):
        return False
    latest, _, traffic = _revisions(isvc, component)
    return sum(traffic.values()) == 100 and traffic.get(latest, 0) == 0


# ---- writing one ----------------------------------------------------------------------------------------------


def with_release(isvc: dict[str, Any], release: Release, component: str, canary_percent: int | None) -> dict[str, Any]:
    """A copy of the InferenceService with ``component`` pointed at the release (and its canary share set, or the
    canary field removed when None)."""
    updated = with_canary_percent(isvc, component, canary_percent)
    spec = updated["spec"][component]
    if component == "predictor":
        spec["model"]["storageUri"] = kserve_uri(release.model_store_uri)
    else:
        container = spec["containers"][0]
        container["env"] = [e for e in container.get("env", []) if e["name"] != STORAGE_ENV]
        container["env"].insert(0, {"name": STORAGE_ENV, "value": kserve_uri(release.serving_uri)})
    return updated


def writable_copy(isvc: dict[str, Any]) -> dict[str, Any]:
    """A deep copy without its status (the controller's to write), its metadata (resourceVersion included) kept."""
    updated = copy.deepcopy(isvc)
    updated.pop("status", None)
    return updated


def with_canary_percent(isvc: dict[str, Any], component: str, percent: int | None) -> dict[str, Any]:
    """A copy, without its status, with the component's canary share set (or the field removed when None)."""
    updated = writable_copy(isvc)
    if percent is None:
        updated["spec"][component].pop("canaryTrafficPercent", None)
    else:
        updated["spec"][component]["canaryTrafficPercent"] = percent
    return updated


def with_spec(isvc: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """A copy, without its status, with ``spec`` in place of its own (its metadata, resourceVersion included, kept)."""
    updated = writable_copy(isvc)
    updated["spec"] = copy.deepcopy(spec)
    return updated


def lock_holder(isvc: dict[str, Any]) -> tuple[str, float] | None:
    """Who holds the rollout lock and until when (Unix seconds); None when nobody does."""
    value = str((isvc["metadata"].get("annotations") or {}).get(LOCK_ANNOTATION) or "")
    owner, _, until = value.partition(" ")
    try:
        return (owner, float(until)) if owner else None
    except ValueError:  # not ours to read: treat it as held, for a day
        return owner, time.time() + 86400


def with_lock(isvc: dict[str, Any], value: str | None) -> dict[str, Any]:
    """A copy, without its status, holding the lock ``value`` (or none)."""
    updated = writable_copy(isvc)
    annotations = dict(updated["metadata"].get("annotations") or {})
    if value is None:
        annotations.pop(LOCK_ANNOTATION, None)
    else:
        annotations[LOCK_ANNOTATION] = value
    updated["metadata"]["annotations"] = annotations
    return updated


def template(path: Path, namespace: str, name: str) -> dict[str, Any]:
    isvc = yaml.safe_load(path.read_text(encoding="utf-8"))
    isvc["metadata"]["namespace"] = namespace
    isvc["metadata"]["name"] = name
    return dict(isvc)


def predictor_url(isvc: dict[str, Any], name: str, namespace: str) -> str:
    """The predictor's cluster-local URL from the InferenceService's status (KServe's default name otherwise)."""
    address = ((isvc.get("status") or {}).get("components") or {}).get("predictor", {}).get("address") or {}
    return str(address.get("url") or f"http://{name}-predictor.{namespace}.svc.cluster.local")


class KServeTarget:
    """Rolls releases out onto an InferenceService (fashionrec.deploy.rollout drives it)."""

    name = "kserve"

    def __init__(
        self,
        client: InferenceServiceClient,
        namespace: str,
        releases_root: str,
        isvc_name: str = MODEL_NAME,
        prometheus_url: str = "",
        scrape_interval_s: float = SCRAPE_INTERVAL_S,
        template_path: Path = Path(IMAGE_ISVC_TEMPLATE),
        timeout_s: float = 900.0,
        poll_s: float = 5.0,
        before_canary: Callable[[str, str], None] | None = None,
    ) -> None:
        self.client = client
        # Called with (model_version, predictor URL) once the predictor serves the new encoder and before its
        # transformer loads: the deploy step encodes there the products added since the model's training run.
        self.before_canary = before_canary
        self.namespace = namespace
        self.releases_root = releases_root
        self.isvc_name = isvc_name
        self.prometheus_url = prometheus_url
        self.scrape_interval_s = scrape_interval_s  # the PodMonitor's interval: the canary check waits for a fresh scrape
        self.template_path = template_path
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        # Past it, a lock is a dead deploy's: every wait of a rollout fits in it (predictor, canary, check, promote).
        self.lock_ttl_s = 4 * timeout_s + 600
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._before: dict[str, Any] | None = None  # the object production had, for a rollback
        self._generation: int | None = None  # the spec's generation after this rollout's last write

    def _get(self) -> dict[str, Any] | None:
        try:
            return dict(self.client.get(self.isvc_name, namespace=self.namespace))
        except Exception as exc:  # kubernetes' ApiException: 404 is an answer, anything else is not
            if getattr(exc, "status", None) == 404 or "(404)" in str(exc):
                return None
            raise

    def _require(self) -> dict[str, Any]:
        isvc = self._get()
        if isvc is None:
            raise KServeRolloutError(f"InferenceService {self.namespace}/{self.isvc_name} not found")
        return isvc

    def _write(self, change: Callable[[dict[str, Any]], dict[str, Any]], what: str) -> dict[str, Any]:
        """Read, change, replace. Refused (RolloutConflict) when the spec moved since this rollout's last write, or
        when another write lands between the read and the replace (the read's resourceVersion goes with it: 409).
        Returns the object as read."""
        current = self._require()
        generation = int(current["metadata"].get("generation") or 0)
        if self._generation is not None and generation != self._generation:
            raise RolloutConflict(
                f"{self.isvc_name}: its spec changed since this rollout's last write (generation {generation}, not "
                f"{self._generation}): {what} not written"
            )
        try:
            written = self.client.replace(self.isvc_name, change(current), namespace=self.namespace)
        except Exception as exc:
            if is_conflict(exc):
                raise RolloutConflict(f"{self.isvc_name} changed while {what} was written: nothing overwritten") from exc
            raise
        stored = written if isinstance(written, dict) else self._require()
        self._generation = int(stored["metadata"].get("generation") or 0)
        return current

    def _lock(self) -> dict[str, Any]:
        """Take the InferenceService's rollout lock; returns the object as it was before."""

        def locked(isvc: dict[str, Any]) -> dict[str, Any]:
            holder = lock_holder(isvc)
            if holder is not None and holder[0] != self.owner and holder[1] > time.time():
                raise RolloutConflict(
                    f"{self.isvc_name} is being rolled out by {holder[0]} (its lock lasts {holder[1] - time.time():.0f} s "
                    "more): try again once it is done"
                )
            return with_lock(isvc, f"{self.owner} {time.time() + self.lock_ttl_s:.0f}")

        self._generation = None
        return self._write(locked, "the rollout lock")

    def _unlock(self) -> None:
        self._write(lambda isvc: with_lock(isvc, None), "the lock's release")
        self._generation = None

    def _wait(self, check: Any, what: str) -> None:
        wait_for(lambda: check(self._require()), self.timeout_s, f"{self.isvc_name}: {what}", self.poll_s)

    def _release(self, release: Servable) -> Release:
        return release if isinstance(release, Release) else self.release_of(release.model_version)

    def stable_version(self) -> str | None:
        return served_version(self._get())

    def serving(self) -> tuple[list[str], str | None]:
        """From one read of the InferenceService: every model version a transformer revision serves now
        (``serving_now``) and the predictor's host[:port] for v2 REST (None before the first release)."""
        isvc = self._get()
        if isvc is None:
            return [], None
        host = predictor_url(isvc, self.isvc_name, self.namespace).split("://", 1)[-1].rstrip("/")
        return serving_now(isvc, self.releases_root), host

    def endpoint(self) -> str:
        status = self._require().get("status") or {}
        url = (status.get("address") or {}).get("url") or status.get("url")
        if not url:
            raise KServeRolloutError(f"{self.isvc_name} has no address yet")
        return str(url)

    def metrics_text(self) -> str:
        if not self.prometheus_url:
            raise KServeRolloutError("a canary check on a cluster reads Prometheus: set prometheus_url")
        return federated_metrics(self.prometheus_url)

    def start_canary(self, release: Servable, share: float) -> None:
        target = self._release(release)
        before = self._lock()  # raises, with nothing written, when another rollout holds it
        self._before = copy.deepcopy(before)
        # 1. predictor to the release's model store (new + production encoders), all traffic, until rolled out
        self._write(lambda isvc: with_release(isvc, target, "predictor", None), "the predictor's release")
        self._wait(lambda isvc: rolled_out(isvc, "predictor"), "predictor rolled out")
        if self.before_canary is not None:
            self.before_canary(target.model_version, predictor_url(self._require(), self.isvc_name, self.namespace))
        # 2. transformer canary
        percent = round(share * 100)
        self._write(lambda isvc: with_release(isvc, target, "transformer", percent), "the transformer's canary")
        self._wait(lambda isvc: canary_serving(isvc, "transformer", percent), f"transformer canary at {percent}%")

    def promote(self, release: Servable) -> None:
        self._write(lambda isvc: with_canary_percent(isvc, "transformer", None), "the promotion")
        self._wait(lambda isvc: rolled_out(isvc, "transformer"), "transformer promoted")
        self._unlock()
        self._before = None

    def rollback(self, release: Servable) -> None:
        if self._before is None:  # this rollout wrote nothing (another one holds the lock, or the first read failed)
            return
        before = self._before
        if "canaryTrafficPercent" in self._require()["spec"]["transformer"]:
            # traffic back on the previous revision now
            self._write(lambda isvc: with_canary_percent(isvc, "transformer", 0), "the traffic pin")
            self._wait(lambda found: pinned_to_previous(found, "transformer"), "traffic pinned to production")
        # production's spec on the object as it is now: its resourceVersion, and the generation check, refuse to
        # undo a change someone else made meanwhile
        self._write(lambda isvc: with_spec(isvc, before["spec"]), "production's spec")
        self._wait(lambda found: rolled_out(found, "transformer") and rolled_out(found, "predictor"), "production restored")
        self._unlock()
        self._before = None

    def first_deploy(self, release: Servable) -> None:
        target = self._release(release)
        isvc = self._get()
        if isvc is None:
            created = template(self.template_path, self.namespace, self.isvc_name)
            created = with_release(with_release(created, target, "predictor", None), target, "transformer", None)
            self.client.create(created, namespace=self.namespace)
        else:
            self._generation = None
            self._write(
                lambda found: with_release(with_release(found, target, "predictor", None), target, "transformer", None),
                "the first release",
            )
        self._wait(lambda found: rolled_out(found, "predictor") and rolled_out(found, "transformer"), "first release ready")

    def release_of(self, model_version: str) -> Release:
        found = read_release(self.releases_root, model_version)
        if found is None:
            raise KServeRolloutError(f"release {model_version} is not published under {self.releases_root}")
        return found


def kserve_client() -> InferenceServices:
    """The Kubernetes API with the pod's service account in a cluster, else the kubeconfig (KServeClient loads it)."""
    from kserve import KServeClient

    return InferenceServices(KServeClient().api_instance)


def pod_namespace(default: str = "kubeflow") -> str:
    """The namespace this pod runs in (KFP runs steps in the user's profile namespace)."""
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text(encoding="utf-8").strip() if path.is_file() else default
