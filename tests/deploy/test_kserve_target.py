"""The kserve target's decisions on recorded InferenceService statuses, and the objects it writes checked against
KServe's schema. No cluster runs here: a simulated controller answers each write the way KServe's does (new
revision, canary traffic split, rollout), which makes this a unit test of the target alone."""

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from fashionrec.deploy.kserve_target import (
    KServeRolloutError,
    KServeTarget,
    canary_serving,
    pinned_to_previous,
    rolled_out,
    served_version,
)
from fashionrec.deploy.rollout import switch
from fashionrec.serving.manifest_schema import validate_custom_resource
from fashionrec.serving.release import Release

TEMPLATE = Path(__file__).resolve().parents[2] / "manifests" / "base" / "inferenceservice.yaml"
ROOT = "gs://bucket/fashionrec/releases"


def release(version: str) -> Release:
    return Release(ROOT, version, None, "2026-11-23T00:00:00+00:00")


def traffic(*entries: tuple[str, int, bool]) -> list[dict[str, Any]]:
    return [
        {"revisionName": r, "percent": p, "latestRevision": latest, "tag": "latest" if latest else "prev"}
        for r, p, latest in entries
    ]


def recorded(generation: int, observed: int, created: str, ready: str, split: list[dict[str, Any]]) -> dict[str, Any]:
    """An InferenceService as `kubectl get isvc -o yaml` shows it during a rollout (the transformer's part)."""
    isvc = yaml.safe_load(TEMPLATE.read_text())
    isvc["metadata"]["generation"] = generation
    isvc["status"] = {
        "observedGeneration": observed,
        "components": {
            "transformer": {
                "latestCreatedRevision": created,
                "latestReadyRevision": ready,
                "latestRolledoutRevision": "fashionrec-transformer-00001",
                "traffic": split,
            }
        },
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    return dict(isvc)


def test_status_checks_on_recorded_statuses() -> None:
    canary = recorded(2, 2, "fashionrec-transformer-00002", "fashionrec-transformer-00002",
                      traffic(("fashionrec-transformer-00001", 90, False), ("fashionrec-transformer-00002", 10, True)))  # fmt: skip
    assert canary_serving(canary, "transformer", 10) and not rolled_out(canary, "transformer")
    stale = copy.deepcopy(canary)
    stale["status"]["observedGeneration"] = 1  # the controller has not seen our write yet: nothing is decided
    assert not canary_serving(stale, "transformer", 10)
    starting = recorded(2, 2, "fashionrec-transformer-00002", "fashionrec-transformer-00001",
                        traffic(("fashionrec-transformer-00001", 100, False)))  # fmt: skip
    assert not canary_serving(starting, "transformer", 10) and not rolled_out(starting, "transformer")
    promoted = recorded(3, 3, "fashionrec-transformer-00002", "fashionrec-transformer-00002",
                        traffic(("fashionrec-transformer-00002", 100, True)))  # fmt: skip
    assert rolled_out(promoted, "transformer")
    pinned = recorded(3, 3, "fashionrec-transformer-00002", "fashionrec-transformer-00002",
                      traffic(("fashionrec-transformer-00001", 100, False), ("fashionrec-transformer-00002", 0, True)))  # fmt: skip
    assert pinned_to_previous(pinned, "transformer")
    failed = copy.deepcopy(starting)
    failed["status"]["conditions"] = [
        {"type": "TransformerReady", "status": "False", "reason": "RevisionFailed", "message": "CrashLoopBackOff"}
    ]
    with pytest.raises(KServeRolloutError, match="RevisionFailed"):
        canary_serving(failed, "transformer", 10)


class SimulatedKServe:
    """Answers get/create/replace like KServe's controller in Serverless mode, and keeps every object written."""

    def __init__(self, isvc: dict[str, Any] | None) -> None:
        self.isvc = isvc
        self.written: list[dict[str, Any]] = []
        self.revisions = {"predictor": 1, "transformer": 1}

    def get(self, name: str | None = None, namespace: str | None = None) -> dict[str, Any]:
        if self.isvc is None:
            raise RuntimeError("Exception when calling CustomObjectsApi->get_namespaced_custom_object: (404) Not Found")
        return copy.deepcopy(self.isvc)

    def create(self, inferenceservice: dict[str, Any], namespace: str | None = None) -> None:
        self.written.append(copy.deepcopy(inferenceservice))
        self.isvc = copy.deepcopy(inferenceservice)
        self.isvc["metadata"]["generation"] = 0
        self._reconcile(None)

    def replace(self, name: str, inferenceservice: dict[str, Any], namespace: str | None = None) -> None:
        self.written.append(copy.deepcopy(inferenceservice))
        before, self.isvc = self.isvc, copy.deepcopy(inferenceservice)
        self._reconcile(before)

    def _reconcile(self, before: dict[str, Any] | None) -> None:
        assert self.isvc is not None
        generation = int(self.isvc["metadata"].get("generation") or 0) + 1
        self.isvc["metadata"]["generation"] = generation
        status = copy.deepcopy((before or {}).get("status") or {"components": {}})
        status["observedGeneration"] = generation
        for component in ("predictor", "transformer"):
            spec = dict(self.isvc["spec"][component])
            percent = spec.pop("canaryTrafficPercent", None)
            old_spec = dict((before or {"spec": {component: {}}})["spec"][component])
            old_spec.pop("canaryTrafficPercent", None)
            current = status["components"].get(component, {})
            rolled = current.get("latestRolledoutRevision")
            if spec != old_spec:
                self.revisions[component] += 1
            latest = f"fashionrec-{component}-{self.revisions[component]:05d}"
            if percent is None or percent == 100 or rolled is None:
                split, rolled = traffic((latest, 100, True)), latest
            else:
                split = traffic((rolled, 100 - percent, False), (latest, percent, True))
            status["components"][component] = {
                "latestCreatedRevision": latest, "latestReadyRevision": latest, "latestRolledoutRevision": rolled,
                "traffic": split, "address": {"url": "http://fashionrec.ns.svc.cluster.local"},
            }  # fmt: skip
        status["address"] = {"url": "http://fashionrec.ns.svc.cluster.local"}
        self.isvc["status"] = status


def target(client: SimulatedKServe) -> KServeTarget:
    return KServeTarget(client, "ns", ROOT, template_path=TEMPLATE, timeout_s=5, poll_s=0.01)


def assert_valid(objects: list[dict[str, Any]]) -> None:
    for written in objects:
        assert validate_custom_resource({k: v for k, v in written.items() if k != "status"}) == []


def test_first_deploy_creates_the_inference_service_from_the_manifest() -> None:
    client = SimulatedKServe(None)
    kserve = target(client)
    assert kserve.stable_version() is None
    kserve.first_deploy(release("aaa111"))
    assert kserve.stable_version() == "aaa111"
    created = client.written[0]
    assert (
        created["metadata"]["namespace"] == "ns"
        and created["spec"]["predictor"]["model"]["storageUri"] == f"{ROOT}/aaa111/model_store"
    )
    assert_valid(client.written)


def test_canary_then_promote_rolls_the_predictor_first_and_the_transformer_as_a_canary() -> None:
    client = SimulatedKServe(None)
    kserve = target(client)
    kserve.first_deploy(release("aaa111"))
    kserve.start_canary(release("bbb222"), 0.1)
    predictor_write, canary_write = client.written[1:3]
    assert predictor_write["spec"]["predictor"]["model"]["storageUri"] == f"{ROOT}/bbb222/model_store"
    assert served_version(predictor_write) == "aaa111"  # the transformer still serves production meanwhile
    assert canary_write["spec"]["transformer"]["canaryTrafficPercent"] == 10 and served_version(canary_write) == "bbb222"
    kserve.promote(release("bbb222"))
    assert "canaryTrafficPercent" not in client.written[-1]["spec"]["transformer"]
    assert kserve.stable_version() == "bbb222" and rolled_out(client.get(), "transformer")
    assert_valid(client.written)


def test_additions_are_encoded_by_the_new_version_between_its_predictor_and_its_transformer() -> None:
    client = SimulatedKServe(None)
    calls: list[tuple[str, str, int]] = []
    kserve = KServeTarget(
        client, "ns", ROOT, template_path=TEMPLATE, timeout_s=5, poll_s=0.01,
        before_canary=lambda version, url: calls.append((version, url, len(client.written))),
    )  # fmt: skip
    kserve.first_deploy(release("aaa111"))
    kserve.start_canary(release("bbb222"), 0.1)
    # once, after the first release and the predictor's write, before the transformer's canary
    assert calls == [("bbb222", "http://fashionrec.ns.svc.cluster.local", 2)] and len(client.written) == 3


def test_rollback_pins_traffic_to_production_then_restores_its_spec() -> None:
    client = SimulatedKServe(None)
    kserve = target(client)
    kserve.first_deploy(release("aaa111"))
    before = client.get()
    kserve.start_canary(release("bbb222"), 0.2)
    kserve.rollback(release("bbb222"))
    pin, restore = client.written[-2:]
    assert pin["spec"]["transformer"]["canaryTrafficPercent"] == 0 and served_version(pin) == "bbb222"
    assert restore["spec"] == before["spec"] and kserve.stable_version() == "aaa111"
    assert_valid(client.written)


def test_a_decided_switch_is_canary_zero_then_promote() -> None:
    client = SimulatedKServe(None)
    kserve = target(client)
    kserve.first_deploy(release("aaa111"))
    assert switch(kserve, release("bbb222")) == "aaa111" and kserve.stable_version() == "bbb222"
    assert switch(kserve, release("bbb222")) is None  # already served: nothing written
    assert_valid(client.written)


def test_a_transformer_uri_outside_the_releases_layout_is_refused() -> None:
    isvc = yaml.safe_load(TEMPLATE.read_text())
    isvc["spec"]["transformer"]["containers"][0]["env"][0]["value"] = "gs://bucket/somewhere/else"
    with pytest.raises(KServeRolloutError, match="not a release's serving folder"):
        served_version(isvc)
