"""The ``kserve`` rollout target: the InferenceService on a cluster, driven through the kserve SDK (``KServeClient``).

Never mixing models (see fashionrec.serving.release): a release's model store serves the new encoder *and*
production's, each under its own name, and each transformer calls the encoder of its own index. So the predictor
rolls first, to 100% (additive: old transformers still find production's encoder in every new predictor pod), and
only then the transformer rolls as a canary (``spec.transformer.canaryTrafficPercent``, Serverless mode). Promote:
the canary takes 100%. Roll back: KServe pins the traffic to the previous rolled-out revision (percent 0), then the
spec is put back to production's release.

The status checks are pure functions of the InferenceService object, unit-tested on recorded statuses.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx
import yaml

from fashionrec.config import MODEL_NAME
from fashionrec.deploy.rollout import Servable, wait_for
from fashionrec.serving.release import SERVING, Release, kserve_uri, read_release

STORAGE_ENV = "STORAGE_URI"  # the transformer container's: KServe's storage initializer fetches it into /mnt/models
# The manifests' placeholder before the first rollout (manifests/base/inferenceservice.yaml).
PLACEHOLDER_VERSION = "FIRST_MODEL_VERSION"
# Where the pipeline image holds the InferenceService the first rollout creates (the Dockerfile copies manifests/).
IMAGE_ISVC_TEMPLATE = "/opt/fashionrec/manifests/base/inferenceservice.yaml"
# The transformers' per-version series, as Prometheus federates them (fashionrec.deploy.canary).
FEDERATE_MATCH = '{__name__=~"fashionrec_model_request.*"}'


class KServeRolloutError(RuntimeError):
    """The InferenceService did not get where the rollout needs it."""


class InferenceServiceClient(Protocol):
    """What the target uses of kserve.KServeClient."""

    def get(self, name: str | None = None, namespace: str | None = None) -> Any: ...
    def create(self, inferenceservice: Any, namespace: str | None = None) -> Any: ...
    def replace(self, name: str, inferenceservice: Any, namespace: str | None = None) -> Any: ...


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


def with_canary_percent(isvc: dict[str, Any], component: str, percent: int | None) -> dict[str, Any]:
    """A copy, without its status, with the component's canary share set (or the field removed when None)."""
    updated = copy.deepcopy(isvc)
    updated.pop("status", None)
    if percent is None:
        updated["spec"][component].pop("canaryTrafficPercent", None)
    else:
        updated["spec"][component]["canaryTrafficPercent"] = percent
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
        self.template_path = template_path
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self._before: dict[str, Any] | None = None  # the spec production had, for a rollback

    def _get(self) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return dict(self.client.get(self.isvc_name, namespace=self.namespace))
        except (ApiException, RuntimeError) as exc:  # KServeClient wraps ApiException in RuntimeError
            if "404" in str(exc) or "Not Found" in str(exc):
                return None
            raise

    def _require(self) -> dict[str, Any]:
        isvc = self._get()
        if isvc is None:
            raise KServeRolloutError(f"InferenceService {self.namespace}/{self.isvc_name} not found")
        return isvc

    def _replace(self, isvc: dict[str, Any]) -> None:
        self.client.replace(self.isvc_name, isvc, namespace=self.namespace)

    def _wait(self, check: Any, what: str) -> None:
        wait_for(lambda: check(self._require()), self.timeout_s, f"{self.isvc_name}: {what}", self.poll_s)

    def _release(self, release: Servable) -> Release:
        return release if isinstance(release, Release) else self.release_of(release.model_version)

    def stable_version(self) -> str | None:
        return served_version(self._get())

    def endpoint(self) -> str:
        status = self._require().get("status") or {}
        url = (status.get("address") or {}).get("url") or status.get("url")
        if not url:
            raise KServeRolloutError(f"{self.isvc_name} has no address yet")
        return str(url)

    def metrics_text(self) -> str:
        if not self.prometheus_url:
            raise KServeRolloutError("a canary check on a cluster reads Prometheus: set prometheus_url")
        response = httpx.get(f"{self.prometheus_url.rstrip('/')}/federate", params={"match[]": FEDERATE_MATCH}, timeout=30)
        response.raise_for_status()
        return response.text

    def start_canary(self, release: Servable, share: float) -> None:
        target = self._release(release)
        current = self._require()
        self._before = copy.deepcopy(current)
        # 1. predictor to the release's model store (new + production encoders), all traffic, until rolled out
        self._replace(with_release(current, target, "predictor", None))
        self._wait(lambda isvc: rolled_out(isvc, "predictor"), "predictor rolled out")
        if self.before_canary is not None:
            self.before_canary(target.model_version, predictor_url(self._require(), self.isvc_name, self.namespace))
        # 2. transformer canary
        percent = round(share * 100)
        self._replace(with_release(self._require(), target, "transformer", percent))
        self._wait(lambda isvc: canary_serving(isvc, "transformer", percent), f"transformer canary at {percent}%")

    def promote(self, release: Servable) -> None:
        self._replace(with_canary_percent(self._require(), "transformer", None))
        self._wait(lambda isvc: rolled_out(isvc, "transformer"), "transformer promoted")

    def rollback(self, release: Servable) -> None:
        if self._before is None:
            return
        isvc = self._require()
        if "canaryTrafficPercent" in isvc["spec"]["transformer"]:
            self._replace(with_canary_percent(isvc, "transformer", 0))  # traffic back on the previous revision now
            self._wait(lambda found: pinned_to_previous(found, "transformer"), "traffic pinned to production")
        restored = copy.deepcopy(self._before)
        restored.pop("status", None)
        restored["metadata"].pop("resourceVersion", None)  # replace the object as it is now, not as it was
        if version := self._require()["metadata"].get("resourceVersion"):
            restored["metadata"]["resourceVersion"] = version
        self._replace(restored)
        self._wait(lambda found: rolled_out(found, "transformer") and rolled_out(found, "predictor"), "production restored")

    def first_deploy(self, release: Servable) -> None:
        target = self._release(release)
        isvc = self._get()
        if isvc is None:
            created = template(self.template_path, self.namespace, self.isvc_name)
            created = with_release(with_release(created, target, "predictor", None), target, "transformer", None)
            self.client.create(created, namespace=self.namespace)
        else:
            self._replace(with_release(with_release(isvc, target, "predictor", None), target, "transformer", None))
        self._wait(lambda found: rolled_out(found, "predictor") and rolled_out(found, "transformer"), "first release ready")

    def release_of(self, model_version: str) -> Release:
        found = read_release(self.releases_root, model_version)
        if found is None:
            raise KServeRolloutError(f"release {model_version} is not published under {self.releases_root}")
        return found


def kserve_client() -> Any:
    """KServeClient with the pod's service account in a cluster, else the kubeconfig."""
    from kserve import KServeClient

    return KServeClient()


def pod_namespace(default: str = "kubeflow") -> str:
    """The namespace this pod runs in (KFP runs steps in the user's profile namespace)."""
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text(encoding="utf-8").strip() if path.is_file() else default
