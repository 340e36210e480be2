"""The pipeline's deploy step: publish the gated model's release, roll it out on the target, move the registry's
production alias only if it was promoted. Targets are named by a URI:

- ``kserve://NAME`` or ``kserve://NAMESPACE/NAME``: the InferenceService (default namespace: the pod's own);
  releases go to ``releases_uri`` (gs://, s3://, minio:// or a path the cluster's storage initializer can read).
- ``local:///ABS/WORKDIR``: the servers of `fashionrec serve --workdir WORKDIR` (or production's, started for the
  rollout); releases go to WORKDIR/releases.
- ``none``: publish only.

Fail closed: a kserve:// rollout with no model registry (nothing to compare the model with, no record of what is in
production) is refused before anything is published, unless the run allows it explicitly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from fashionrec.config import SCRAPE_INTERVAL_S
from fashionrec.data.changes import ChangeLog
from fashionrec.data.split import holdout_mask
from fashionrec.data.table import read_table
from fashionrec.deploy.kserve_target import InferenceServiceClient, KServeTarget, kserve_client, pod_namespace
from fashionrec.deploy.rollout import RolloutResult, RolloutSettings, probe_bodies, rollout
from fashionrec.retrieval.feast_store import is_shared, open_store, retire_model_version
from fashionrec.serving.release import Deployment, Release, publish, read_release
from fashionrec.storage import redact_urls
from fashionrec.training.registry import MlflowRegistry
from fashionrec.workdir import WorkDir

PROBE_PHOTOS = 20  # held-out photos sent as image queries during the canary
PROBE_ITEMS = 20  # and catalogue items as item_id queries
# Knative drains a replaced revision's pods after the traffic moved: their requests still read the old vectors.
RETIRE_GRACE_S = 60.0


class DeployRefused(ValueError):
    """The run's settings do not allow this deploy; nothing was published or changed."""


@dataclass(frozen=True)
class DeployTarget:
    kind: str  # kserve, local or none
    namespace: str = ""
    name: str = ""
    work_dir: Path | None = None


def parse_target(uri: str) -> DeployTarget:
    parsed = urlparse(uri)
    if uri == "none":
        return DeployTarget("none")
    if parsed.scheme == "kserve":
        parts = [p for p in f"{parsed.netloc}{parsed.path}".split("/") if p]
        if len(parts) not in (1, 2):
            raise ValueError(f"deploy target {redact_urls(uri)!r}: use kserve://NAME or kserve://NAMESPACE/NAME")
        return DeployTarget("kserve", namespace=parts[0] if len(parts) == 2 else "", name=parts[-1])
    if parsed.scheme == "local" and not parsed.netloc and parsed.path.startswith("/"):
        return DeployTarget("local", work_dir=Path(parsed.path))
    raise ValueError(f"deploy target {redact_urls(uri)!r}: use kserve://[NAMESPACE/]NAME, local:///ABSOLUTE/WORKDIR or none")


def serving_on(target_uri: str, releases_uri: str, isvc_client: InferenceServiceClient | None = None) -> tuple[list[str], str]:
    """What a ``kserve://[NAMESPACE/]NAME`` target serves now, for a catalogue update: every model version a
    transformer revision serves (production, and the canary during a rollout) and the predictor's host[:port]."""
    target = parse_target(target_uri)
    if target.kind != "kserve":
        raise ValueError(
            f"serving target {redact_urls(target_uri)!r}: a cluster's catalogue update needs kserve://[NAMESPACE/]NAME"
        )
    kserve = KServeTarget(isvc_client or kserve_client(), target.namespace or pod_namespace(), releases_uri, target.name)
    versions, predictor_host = kserve.serving()
    if not versions or predictor_host is None:
        raise ValueError(f"{target.name} serves no release yet: nothing to encode new products with")
    return versions, predictor_host


def probe_requests(valid_table: Path, holdout_fraction: float, seed: int = 0) -> list[dict[str, Any]]:
    """Probe traffic from the catalogue: held-out photos as image queries, catalogue items as item_id queries."""

    table = read_table(valid_table)
    rng = np.random.default_rng(seed)
    held_out = table[holdout_mask(table, holdout_fraction)]
    photos = held_out if len(held_out) else table
    photo_rows = rng.choice(len(photos), size=min(PROBE_PHOTOS, len(photos)), replace=False)
    item_rows = rng.choice(len(table), size=min(PROBE_ITEMS, len(table)), replace=False)
    return probe_bodies([bytes(photos["image"].iloc[i]) for i in photo_rows], [int(table["id"].iloc[i]) for i in item_rows])


def deploy(
    artifacts: Deployment,
    target_uri: str,
    releases_uri: str,
    probes: list[dict[str, Any]],
    registry_uri: str = "",
    registered_version: int = 0,
    settings: RolloutSettings | None = None,
    prometheus_url: str = "",
    catalog_changes_uri: str = "",
    scrape_interval_s: float = SCRAPE_INTERVAL_S,
    allow_unregistered_deploy: bool = False,
    isvc_client: InferenceServiceClient | None = None,
    retire_grace_s: float = RETIRE_GRACE_S,
) -> tuple[Release, RolloutResult | None]:
    """Publish, roll out, and on promote move the production alias to ``registered_version``. On a cluster, the
    products added through the catalogue change log ``catalog_changes_uri`` since this model's training run are
    encoded by its encoder before its transformer loads. The release's model store also serves the encoder of the
    version the InferenceService serves (not the registry's alias: the two differ after a `model rollback` that
    moved only the alias, or a promote that timed out), so the stable transformer keeps its encoder throughout.
    ``isvc_client``: the Kubernetes API's InferenceServices (default: the pod's or the kubeconfig's);
    ``retire_grace_s``: how long the replaced revision's pods drain on a cluster before its vectors go."""
    target = parse_target(target_uri)
    if target.kind == "kserve" and not registry_uri and not allow_unregistered_deploy:
        raise DeployRefused(
            f"not deployed to {redact_urls(target_uri)}: the run has no model registry (registry_uri), so nothing compared this "
            "model with production nor records what is served; set registry_uri, or allow_unregistered_deploy=true"
        )
    registry = None
    production_version = None
    if registry_uri:
        registry = MlflowRegistry(registry_uri)
        production = registry.production()
        production_version = production.model_version if production else None
    if target.kind == "local":
        assert target.work_dir is not None
        releases_uri = WorkDir(target.work_dir).releases
    kserve = None
    if target.kind == "kserve":
        kserve = KServeTarget(
            isvc_client or kserve_client(),
            target.namespace or pod_namespace(),
            releases_uri,
            target.name,
            prometheus_url=prometheus_url,
            scrape_interval_s=scrape_interval_s,
            before_canary=catch_up_additions(artifacts.feature_repo, catalog_changes_uri) if catalog_changes_uri else None,
        )
    # The version served beside the new one: what the InferenceService serves; locally (a `fashionrec serve` runs
    # its own snapshots, or production's servers are started for the check) and for `none`, the alias's.
    beside = kserve.stable_version() if kserve is not None else production_version
    # None also when it predates releases here: nothing to serve beside the new one
    previous = read_release(releases_uri, beside) if beside else None
    release = publish(artifacts, releases_uri, previous)
    if target.kind == "none":
        return release, None
    if kserve is not None:
        result = rollout(kserve, release, probes, settings)
    else:
        # kserve (the local servers' predictor client, an optional extra): loaded for a local rollout only
        from fashionrec.deploy.local_target import local_target

        assert target.work_dir is not None
        with local_target(target.work_dir, previous.deployment() if previous else None) as local:
            if local is None:  # nothing in production: the first release is served by `fashionrec serve` as it is
                result = RolloutResult(True, release.model_version, None, "local", ["nothing was in production: released"])
            else:
                result = rollout(local, release.deployment(), probes, settings)
    if result.promoted and registry is not None and registered_version:
        registry.promote(registered_version)
    retire_vectors(artifacts.feature_repo, result, grace_s=retire_grace_s if target.kind == "kserve" else 0.0)
    return release, result


def catch_up_additions(feature_repo: Path, catalog_changes_uri: str) -> Callable[[str, str], None]:
    """The KServe target's hook: encode with the new version, through its predictor, the products added since its
    training run (a shared online store only: the embedded sqlite store of a release never sees additions)."""

    def catch_up(model_version: str, predictor_url: str) -> None:
        # kserve (the predictor client, an optional extra): loaded only when a catch-up runs
        from fashionrec.catalog.update import ServedVersion, reencode_additions
        from fashionrec.serving.predictor_client import make_predictor

        if not is_shared(open_store(feature_repo)):
            return
        host = predictor_url.removeprefix("http://").removeprefix("https://").rstrip("/")
        reencode_additions(ChangeLog(catalog_changes_uri), ServedVersion(model_version, feature_repo), make_predictor("v2", host))

    return catch_up


def retire_vectors(feature_repo: Path, result: RolloutResult, grace_s: float = 0.0) -> None:
    """After the rollout, a shared online store keeps only the served version's vectors: the old version's go once
    the new one is promoted (after ``grace_s``, while the replaced pods drain), the new one's if it was rolled back.
    Reported in the result's reasons; never fails the deploy (the decision is taken), and keeps both when the
    rollback was incomplete (both may still serve)."""

    retired = result.stable_version if result.promoted else result.model_version
    if retired is None or retired == (result.model_version if result.promoted else result.stable_version):
        return
    if any(reason.startswith("rollback incomplete") for reason in result.reasons):
        result.reasons.append(f"kept the vectors of {retired} in the online store: the rollback was incomplete")
        return
    time.sleep(grace_s)
    try:
        removed = retire_model_version(feature_repo, retired)
    except Exception as exc:  # the store unreachable, a store without deletes: report it, the rollout stands
        result.reasons.append(f"could not delete the vectors of {retired} from the online store: {type(exc).__name__}: {exc}")
        return
    if removed is not None:
        result.reasons.append(f"deleted the {removed} vectors of {retired} from the shared online store")
