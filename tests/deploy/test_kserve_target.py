"""The kserve target's decisions on recorded InferenceService statuses, and the objects it writes checked against
KServe's schema. No cluster runs here: a simulated controller answers each write the way KServe's does (new
revision, canary traffic split, rollout), which makes this a unit test of the target alone."""

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from fashionrec.config import MODEL_NAME
from fashionrec.deploy.kserve_target import (
    KServeRolloutError,
    KServeTarget,
    RolloutConflict,
    canary_serving,
    lock_holder,
    pinned_to_previous,
    rolled_out,
    served_version,
    with_lock,
)
from fashionrec.deploy.rollout import rollout, switch
from fashionrec.deploy.step import deploy
from fashionrec.serving.manifest_schema import validate_custom_resource
from fashionrec.serving.release import Release, publish
from tests.deploy.release_fakes import fake_deployment

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
    """Answers get/create/replace like the Kubernetes API server and KServe's controller in Serverless mode, and keeps
    every object written. As the API server documents it: an update must carry the object's current
    metadata.resourceVersion (none: 422, another: 409 Conflict); every write, the controller's status updates
    included, moves resourceVersion; metadata.generation moves only when the spec changes."""

    def __init__(self, isvc: dict[str, Any] | None) -> None:
        self.isvc = isvc
        if self.isvc is not None:
            self.isvc["metadata"].setdefault("resourceVersion", "1")
            self.isvc["metadata"].setdefault("generation", 1)
        self.written: list[dict[str, Any]] = []
        self.revisions = {"predictor": 1, "transformer": 1}
        self.version = 1
        self.before_next_write: Callable[[SimulatedKServe], None] | None = None  # a write landing in between

    def _bump(self) -> str:
        self.version += 1
        return str(self.version)

    def get(self, name: str = MODEL_NAME, namespace: str = "ns") -> dict[str, Any]:
        if self.isvc is None:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.isvc)

    def create(self, inferenceservice: dict[str, Any], namespace: str) -> dict[str, Any]:
        self.written.append(copy.deepcopy(inferenceservice))
        self.isvc = copy.deepcopy(inferenceservice)
        self.isvc["metadata"].update(generation=1, resourceVersion=self._bump())
        stored = copy.deepcopy(self.isvc)
        self._reconcile(None)
        return stored

    def replace(self, name: str, inferenceservice: dict[str, Any], namespace: str) -> dict[str, Any]:
        if self.before_next_write is not None:
            interfere, self.before_next_write = self.before_next_write, None
            interfere(self)
        assert self.isvc is not None
        sent = inferenceservice["metadata"].get("resourceVersion")
        if not sent:
            raise ApiException(status=422, reason="metadata.resourceVersion: Invalid value: 0x0: must be specified for an update")
        if sent != self.isvc["metadata"]["resourceVersion"]:
            raise ApiException(
                status=409, reason="Conflict: the object has been modified; please apply your changes to the latest version"
            )
        self.written.append(copy.deepcopy(inferenceservice))
        before, self.isvc = self.isvc, copy.deepcopy(inferenceservice)
        spec_changed = self.isvc["spec"] != before["spec"]
        generation = int(before["metadata"]["generation"]) + (1 if spec_changed else 0)
        self.isvc["metadata"].update(generation=generation, resourceVersion=self._bump())
        self.isvc["status"] = before.get("status")
        stored = copy.deepcopy(self.isvc)
        self._reconcile(before if spec_changed else None, spec_changed)
        return stored

    def _reconcile(self, before: dict[str, Any] | None, spec_changed: bool = True) -> None:
        """The controller: a new revision for each changed component, the traffic split, a status update."""
        assert self.isvc is not None
        if not spec_changed and self.isvc.get("status"):
            return  # an annotation or label only: no new revision
        generation = int(self.isvc["metadata"]["generation"])
        status = copy.deepcopy((before or {}).get("status") or self.isvc.get("status") or {"components": {}})
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
        self.isvc["metadata"]["resourceVersion"] = self._bump()  # the status update is a write too


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
    lock_write, predictor_write, canary_write = client.written[1:4]
    assert lock_holder(lock_write) is not None and lock_write["spec"] == client.written[0]["spec"]  # the lock alone
    assert predictor_write["spec"]["predictor"]["model"]["storageUri"] == f"{ROOT}/bbb222/model_store"
    assert served_version(predictor_write) == "aaa111"  # the transformer still serves production meanwhile
    assert canary_write["spec"]["transformer"]["canaryTrafficPercent"] == 10 and served_version(canary_write) == "bbb222"
    kserve.promote(release("bbb222"))
    promotion, unlock = client.written[-2:]
    assert "canaryTrafficPercent" not in promotion["spec"]["transformer"] and lock_holder(unlock) is None
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
    # once, after the first release, the lock and the predictor's write, before the transformer's canary
    assert calls == [("bbb222", "http://fashionrec.ns.svc.cluster.local", 3)] and len(client.written) == 4


def test_rollback_pins_traffic_to_production_then_restores_its_spec() -> None:
    client = SimulatedKServe(None)
    kserve = target(client)
    kserve.first_deploy(release("aaa111"))
    before = client.get()
    kserve.start_canary(release("bbb222"), 0.2)
    kserve.rollback(release("bbb222"))
    pin, restore, unlock = client.written[-3:]
    assert pin["spec"]["transformer"]["canaryTrafficPercent"] == 0 and served_version(pin) == "bbb222"
    assert restore["spec"] == before["spec"] and kserve.stable_version() == "aaa111"
    assert lock_holder(unlock) is None and lock_holder(client.get()) is None
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


def edited_by_someone_else(client: SimulatedKServe) -> None:
    """Another writer (a second deploy, `kubectl edit`) changes the spec the way every client must: on what it read."""
    isvc = client.get()
    isvc["spec"]["predictor"]["minReplicas"] = 3
    isvc.pop("status")
    client.replace(MODEL_NAME, isvc, "ns")


def test_a_rollback_never_undoes_a_change_made_meanwhile() -> None:
    """The rollback used to copy the live resourceVersion onto production's saved spec: a change made during the
    canary (another deploy's, an operator's) was silently undone. Now it is refused and the change stays."""
    client = SimulatedKServe(None)
    kserve = target(client)
    kserve.first_deploy(release("aaa111"))
    kserve.start_canary(release("bbb222"), 0.2)
    edited_by_someone_else(client)
    with pytest.raises(RolloutConflict, match="spec changed since this rollout's last write"):
        kserve.rollback(release("bbb222"))
    assert client.get()["spec"]["predictor"]["minReplicas"] == 3
    # through the rollout procedure it is a loud "rollback incomplete", never a quiet overwrite
    assert "rollback incomplete: RolloutConflict" in " ".join(_rollback_reasons(kserve))


def _rollback_reasons(kserve: KServeTarget) -> list[str]:
    from fashionrec.deploy.rollout import _rollback

    return _rollback(kserve, release("bbb222"))


def test_a_write_landing_between_the_read_and_the_replace_is_refused_not_overwritten() -> None:
    client = SimulatedKServe(None)
    kserve = target(client)
    kserve.first_deploy(release("aaa111"))
    client.before_next_write = edited_by_someone_else  # lands after the target's read, before its write
    with pytest.raises(RolloutConflict, match="changed while the rollout lock was written"):
        kserve.start_canary(release("bbb222"), 0.2)
    assert client.get()["spec"]["predictor"]["minReplicas"] == 3 and kserve.stable_version() == "aaa111"


def test_two_rollouts_never_interleave_and_a_dead_ones_lock_expires() -> None:
    client = SimulatedKServe(None)
    first, second = target(client), target(client)
    first.first_deploy(release("aaa111"))
    first.start_canary(release("bbb222"), 0.2)
    writes = len(client.written)
    result = rollout(second, release("ccc333"), [])
    assert not result.promoted and "is being rolled out by" in result.markdown, result.markdown
    assert len(client.written) == writes and served_version(client.get()) == "bbb222"  # the other wrote nothing
    first.promote(release("bbb222"))
    assert lock_holder(client.get()) is None
    # a deploy that died holding the lock: taken over once it expired
    dead = with_lock(client.get(), f"dead-pod {time.time() - 1:.0f}")
    client.replace(MODEL_NAME, dead, "ns")
    second.start_canary(release("ccc333"), 0.2)
    holder = lock_holder(client.get())
    assert holder is not None and holder[0] == second.owner
    second.promote(release("ccc333"))
    assert second.stable_version() == "ccc333" and lock_holder(client.get()) is None
    assert_valid(client.written)


def test_the_release_serves_the_encoder_of_what_the_inference_service_serves(tmp_path: Path) -> None:
    """The registry's alias names nothing here (no registry), the InferenceService serves aaa111: the new release's
    model store holds aaa111's encoder beside its own, so the stable transformer keeps its encoder during the canary.
    It used to take the alias's (none here), and the stable transformer lost its encoder."""
    releases = tmp_path / "releases"
    served = publish(fake_deployment(tmp_path / "runs", "aaa111"), str(releases))
    client = SimulatedKServe(None)
    target(client).first_deploy(served)
    release, result = deploy(
        fake_deployment(tmp_path / "runs", "bbb222"), "kserve://ns/fashionrec", str(releases), probes=[],
        allow_unregistered_deploy=True, isvc_client=client, retire_grace_s=0.0,
    )  # fmt: skip
    archives = sorted(p.name for p in (Path(release.model_store_uri) / "model-store").glob("*.mar"))
    assert release.previous_version == "aaa111" and archives == [f"{MODEL_NAME}-aaa111.mar", f"{MODEL_NAME}.mar"]
    assert result is not None and result.stable_version == "aaa111"


def test_what_is_served_follows_the_rollout_production_and_the_canary_while_it_shares_the_traffic(tmp_path: Path) -> None:
    """What a catalogue update encodes for, read from the InferenceService: the canary's release and the stable
    revision's (the release's previous version) while the canary is on, one version otherwise."""
    releases = str(tmp_path / "releases")
    first = publish(fake_deployment(tmp_path / "runs", "aaa111"), releases)
    second = publish(fake_deployment(tmp_path / "runs", "bbb222"), releases, first)
    third = publish(fake_deployment(tmp_path / "runs", "ccc333"), releases, second)
    client = SimulatedKServe(None)
    kserve = KServeTarget(client, "ns", releases, template_path=TEMPLATE, timeout_s=5, poll_s=0.01)
    assert kserve.serving() == ([], None)
    kserve.first_deploy(first)
    assert kserve.serving()[0] == ["aaa111"]
    kserve.start_canary(second, 0.1)
    assert kserve.serving()[0] == ["bbb222", "aaa111"]
    kserve.promote(second)
    assert kserve.serving()[0] == ["bbb222"]
    kserve.start_canary(third, 0.2)
    kserve.rollback(third)
    assert kserve.serving() == (["bbb222"], "fashionrec.ns.svc.cluster.local")
