"""The Kubernetes manifests agree with the code that runs locally: names, image, arguments."""

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from fashionrec.config import (
    CATALOG_POLL_SECONDS,
    DYNAMIC_BATCH_SIZE,
    IMAGE_KSERVE_DIR,
    MAX_REQUEST_BYTES,
    MAX_REQUEST_PIXELS,
    MODEL_NAME,
    MONITOR_SECONDS,
    PREDICTOR_CPUS,
    RERANK_DEPTH,
    RERANK_VOTERS,
    RERANK_WEIGHT,
    TRANSFORMER_GRPC_PORT,
    TRANSFORMER_HTTP_PORT,
    TRANSFORMER_IMAGE,
)
from fashionrec.serving.entrypoints import kserve_file
from fashionrec.serving.manifest_schema import validate_custom_resource
from fashionrec.serving.processes import LocalKServeEncoder, LocalTransformer
from fashionrec.serving.torchserve import TorchServeSettings, torchserve_properties
from fashionrec.serving.transformer import CPU_WORKERS

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"
BASE = MANIFESTS / "base"
# Every deployable variant, with the operator's uncommitted credential files it needs to render.
OVERLAYS: dict[str, dict[str, str]] = {
    ".": {},
    "overlays/s3": {
        "s3.env": "AWS_ACCESS_KEY_ID=id-from-test\nAWS_SECRET_ACCESS_KEY=key-from-test\n",
        "s3-endpoint.env": (
            "S3_ENDPOINT=objects.test.internal:9443\nAWS_ENDPOINT_URL=https://objects.test.internal:9443\n"
            "S3_USE_HTTPS=1\nS3_REGION=eu-test-1\n"
        ),
    },
    "overlays/gcs": {"gcs-key.json": '{"type": "service_account"}'},
    "overlays/kserve-encoder": {},
    "overlays/canary": {},
    "overlays/gpu-predictor": {},
}
STORAGE_ROOTS = {"overlays/s3": "s3://YOUR_BUCKET/fashionrec"}  # the others: the base's
BASE_STORAGE_ROOT = "gs://YOUR_BUCKET/fashionrec"
FIRST_MODEL_VERSION = "FIRST_MODEL_VERSION"  # the deploy step patches it on every rollout
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
# Canary traffic splitting needs Knative revisions. "Knative" is KServe 0.21's name for the mode; the legacy alias
# "Serverless" is still parsed, but an InferenceService created with it rejects every later update (kserve#5885).
KNATIVE_MODE = "Knative"
# Where the deploy step reads the InferenceService it creates when there is none, in the image.
IMAGE_ISVC_TEMPLATE = "/opt/fashionrec/manifests/base/inferenceservice.yaml"


def load(name: str) -> dict:
    document = yaml.safe_load((BASE / name).read_text())
    assert isinstance(document, dict)
    return document


def load_all(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((BASE / name).read_text()) if d]


def test_inference_service_shares_the_model_name_and_image() -> None:
    isvc = load("inferenceservice.yaml")
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["kind"] == "InferenceService"
    assert isvc["metadata"]["name"] == MODEL_NAME
    predictor = isvc["spec"]["predictor"]["model"]
    assert predictor["modelFormat"]["name"] == "pytorch" and predictor["protocolVersion"] == "v2"
    container = isvc["spec"]["transformer"]["containers"][0]
    assert container["image"] == TRANSFORMER_IMAGE
    assert container["command"] == ["python", f"{IMAGE_KSERVE_DIR}/{LocalTransformer.entrypoint}"]
    assert kserve_file(LocalTransformer.entrypoint).parent.name == "kserve"  # what `fashionrec serve` runs


def test_the_images_hold_kserve_where_the_manifests_run_it_and_the_transformers_has_no_torch() -> None:
    dockerfile = (MANIFESTS.parent / "Dockerfile").read_text()
    stages = {block.split()[2]: block for block in dockerfile.split("\nFROM ")[1:]}  # "<image> AS <name> ..."
    assert f"WORKDIR {Path(IMAGE_KSERVE_DIR).parent}" in stages["base"]
    for target in ("transformer", "pipeline"):
        assert "COPY kserve ./kserve" in stages[target]
        # The deploy step reads the InferenceService template from the image. Only base/: an overlay may hold an
        # operator's credential file (s3.env, gcs-key.json), which a COPY of manifests/ would bake into the image.
        assert "COPY manifests/base ./manifests/base" in stages[target]
    assert not re.search(r"^COPY manifests(/overlays)?/? ", dockerfile, re.MULTILINE)
    assert (MANIFESTS.parent / Path(IMAGE_ISVC_TEMPLATE).relative_to(Path(IMAGE_KSERVE_DIR).parent)).is_file()
    assert "torch" not in stages["transformer"] and " transformer,redis,storage " in stages["transformer"]
    assert "torch==" in stages["pipeline"] and dockerfile.rstrip().split("\nFROM ")[-1].startswith("base AS pipeline")


def test_transformer_arguments_match_the_local_run() -> None:
    container = load("inferenceservice.yaml")["spec"]["transformer"]["containers"][0]
    in_cluster = dict(arg.split("=", 1) for arg in container["args"])
    local = dict(
        arg.split("=", 1)
        for arg in LocalTransformer(
            Path("w"),
            index_dir=Path("i"),
            feature_repo=Path("f"),
            predictor_host="h:1",
            catalog_changes=Path("c"),
            request_log=Path("r"),
            event_log=Path("e"),
            monitor_seconds=MONITOR_SECONDS,
        ).args()
    )
    # KServe injects --predictor_host in the cluster; everything else is passed the same way.
    assert set(in_cluster) == set(local) - {"--predictor_host"}
    assert in_cluster["--model_name"] == local["--model_name"] == MODEL_NAME
    assert in_cluster["--predictor_protocol"] == local["--predictor_protocol"] == "v2"
    assert in_cluster["--max_request_bytes"] == local["--max_request_bytes"]
    assert in_cluster["--enable_latency_logging"] == local["--enable_latency_logging"] == "false"
    assert in_cluster["--rerank_voters"] == local["--rerank_voters"] == str(RERANK_VOTERS)
    assert in_cluster["--rerank_depth"] == local["--rerank_depth"] == str(RERANK_DEPTH)
    assert in_cluster["--rerank_weight"] == local["--rerank_weight"] == f"{RERANK_WEIGHT:g}"
    assert in_cluster["--catalog_poll_seconds"] == local["--catalog_poll_seconds"] == f"{CATALOG_POLL_SECONDS:g}"
    assert in_cluster["--monitor_seconds"] == local["--monitor_seconds"] == f"{MONITOR_SECONDS:g}"
    assert in_cluster["--http_port"] == str(TRANSFORMER_HTTP_PORT) and in_cluster["--grpc_port"] == str(TRANSFORMER_GRPC_PORT)
    assert {p["containerPort"] for p in container["ports"]} == {TRANSFORMER_HTTP_PORT}


def test_kustomization_lists_every_manifest() -> None:
    listed = set(load("kustomization.yaml")["resources"])
    assert listed == {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"] == ["base"]
    service_account = load("serviceaccount.yaml")
    isvc = load("inferenceservice.yaml")["spec"]
    assert (
        isvc["predictor"]["serviceAccountName"]
        == isvc["transformer"]["serviceAccountName"]
        == service_account["metadata"]["name"]
    )
    assert "secrets" not in service_account  # base: Workload Identity, no credentials in the repository


def kustomize(overlay: str, tmp_path: Path, files: dict[str, str]) -> list[dict[str, Any]]:
    """`kubectl kustomize` of a copy of manifests/ with the operator's uncommitted credential files added."""
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy)
    for name, text in files.items():
        (copy / overlay / name).write_text(text)
    rendered = subprocess.run(["kubectl", "kustomize", str(copy / overlay)], capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(rendered) if d]


def storage_uris(documents: list[dict[str, Any]]) -> set[str]:
    isvc = next(d for d in documents if d["kind"] == "InferenceService")["spec"]
    env = {e["name"]: e.get("value") for e in isvc["transformer"]["containers"][0]["env"]}
    return {isvc["predictor"]["model"]["storageUri"].split("://")[0], env["STORAGE_URI"].split("://")[0]}


@pytest.mark.parametrize(
    ("overlay", "files", "scheme", "secret_keys"),
    [
        (".", OVERLAYS["."], "gs", None),
        ("overlays/s3", OVERLAYS["overlays/s3"], "s3", {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}),
        ("overlays/gcs", OVERLAYS["overlays/gcs"], "gs", {"gcloud-application-credentials.json"}),
        ("overlays/kserve-encoder", OVERLAYS["overlays/kserve-encoder"], "gs", None),
        ("overlays/canary", OVERLAYS["overlays/canary"], "gs", None),
        ("overlays/gpu-predictor", OVERLAYS["overlays/gpu-predictor"], "gs", None),
    ],
)
def test_storage_scheme_and_credentials_agree_and_no_secret_is_committed(
    overlay: str, files: dict[str, str], scheme: str, secret_keys: set[str] | None, tmp_path: Path
) -> None:
    documents = kustomize(overlay, tmp_path, files)
    assert storage_uris(documents) == {scheme}
    secrets = [d for d in documents if d["kind"] == "Secret"]
    service_account = next(d for d in documents if d["kind"] == "ServiceAccount")
    if secret_keys is None:
        assert not secrets and "secrets" not in service_account
    else:
        (secret,) = secrets
        assert set(secret["data"]) == secret_keys  # from the operator's file, not from the repository
        assert service_account["secrets"] == [{"name": secret["metadata"]["name"]}]
        if scheme == "s3":  # the endpoint is the operator's (s3-endpoint.env), none is hard-coded
            assert secret["metadata"]["annotations"] == {
                "serving.kserve.io/s3-endpoint": "objects.test.internal:9443",
                "serving.kserve.io/s3-usehttps": "1",
                "serving.kserve.io/s3-region": "eu-test-1",
            }
            isvc = next(d for d in documents if d["kind"] == "InferenceService")
            env = {e["name"]: e.get("value") for e in isvc["spec"]["transformer"]["containers"][0]["env"]}
            assert env["AWS_ENDPOINT_URL"] == "https://objects.test.internal:9443"
            assert not [d for d in documents if d["kind"] == "ConfigMap"]  # read by kustomize only, never applied
            assert "minio-service" not in (MANIFESTS / overlay / "kustomization.yaml").read_text().split("apiVersion:")[1]
    for document in documents:  # what kubectl apply would send, checked like the committed files
        if document["apiVersion"].startswith("serving.kserve.io/"):
            assert validate_custom_resource(document) == []
    for name in files:  # the credential files are kept out of git
        assert subprocess.run(["git", "check-ignore", "-q", str(MANIFESTS / overlay / name)], cwd=MANIFESTS).returncode == 0
    committed = "".join(p.read_text() for p in MANIFESTS.rglob("*.yaml"))
    assert "REPLACE_ME" not in committed
    committed_objects = [d for p in MANIFESTS.rglob("*.yaml") for d in yaml.safe_load_all(p.read_text()) if isinstance(d, dict)]
    committed_kinds = {d.get("kind") for d in committed_objects}
    assert "Secret" not in committed_kinds  # generated from the operator's files, never committed


def assert_valid(document: dict[str, Any]) -> None:
    """Core objects against the Kubernetes API schema, KServe resources against KServe's generated OpenAPI models."""
    import kubernetes_validate

    if document["apiVersion"].startswith("serving.kserve.io/"):
        assert validate_custom_resource(document) == []
    else:
        kubernetes_validate.validate(document, "1.30", strict=True)


@pytest.mark.parametrize("name", sorted(p.name for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml"))
def test_every_manifest_validates_against_its_schema(name: str) -> None:
    for document in load_all(name):
        assert_valid(document)


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_overlay_renders_and_every_object_validates(overlay: str, tmp_path: Path) -> None:
    documents = kustomize(overlay, tmp_path, OVERLAYS[overlay])
    kinds = sorted(d["kind"] for d in documents)
    assert {"InferenceService", "ServingRuntime", "ServiceAccount", "Role", "RoleBinding"} <= set(kinds)
    assert kinds.count("InferenceService") == 1
    for document in documents:
        assert_valid(document)


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_variant_runs_in_the_knative_mode_that_canaries_need(overlay: str, tmp_path: Path) -> None:
    """The deploy step canaries the transformer of whichever variant is deployed, so each one names the mode: KServe's
    default is Standard (plain Deployments, no traffic split), and the mode of an InferenceService cannot change."""
    isvc = next(d for d in kustomize(overlay, tmp_path, OVERLAYS[overlay]) if d["kind"] == "InferenceService")
    assert isvc["metadata"]["annotations"][DEPLOYMENT_MODE] == KNATIVE_MODE


def by_identity(documents: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in documents}


def test_canary_overlay_sets_the_transformers_canary_traffic_and_nothing_else(tmp_path: Path) -> None:
    base = by_identity(kustomize(".", tmp_path / "base", {}))
    canary = by_identity(kustomize("overlays/canary", tmp_path / "canary", {}))
    isvc = canary[("InferenceService", MODEL_NAME)]
    percent = isvc["spec"]["transformer"].pop("canaryTrafficPercent")
    assert isinstance(percent, int) and 1 <= percent <= 99  # 0 is a rollback, 100 a promotion
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]  # the predictor rolls 100% first
    assert canary == base


def test_both_components_autoscale_on_concurrency_within_their_bounds() -> None:
    spec = load("inferenceservice.yaml")["spec"]
    targets = {}
    for component in ("predictor", "transformer"):
        assert spec[component]["scaleMetric"] == "concurrency"  # what Knative's autoscaler (KPA) scales on
        targets[component] = spec[component]["scaleTarget"]
        assert isinstance(targets[component], int) and targets[component] > 0
        assert 1 <= spec[component]["minReplicas"] <= spec[component]["maxReplicas"]  # no scale to zero
    assert targets["predictor"] == DYNAMIC_BATCH_SIZE  # one full batch in flight per pod
    assert targets["transformer"] > targets["predictor"]  # it mostly awaits the predictor


def test_the_deployers_role_grants_only_inference_service_verbs() -> None:
    documents = by_identity(load_all("rbac-deployer.yaml"))
    assert set(documents) == {("Role", "fashionrec-deployer"), ("RoleBinding", "fashionrec-deployer")}
    by_name, create = documents["Role", "fashionrec-deployer"]["rules"]
    for rule in (by_name, create):
        assert rule["apiGroups"] == ["serving.kserve.io"] and rule["resources"] == ["inferenceservices"]
        assert "nonResourceURLs" not in rule
    # what the kserve target does (get, replace, its lock annotation), on its InferenceService alone
    assert by_name["resourceNames"] == [MODEL_NAME] and sorted(by_name["verbs"]) == ["get", "patch", "update"]
    # a create cannot name its object in RBAC: the one verb left unnamed, and nothing else with it
    assert create["verbs"] == ["create"] and "resourceNames" not in create
    binding = documents["RoleBinding", "fashionrec-deployer"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "fashionrec-deployer"}
    assert {s["kind"] for s in binding["subjects"]} == {"ServiceAccount"}
    # Kubeflow multi-user profiles run pipelines as default-editor, standalone KFP as pipeline-runner.
    assert {s["name"] for s in binding["subjects"]} == {"default-editor", "pipeline-runner"}


RELEASE_URI = re.compile(r"(?P<root>[a-z0-9]+://.+)/releases/(?P<version>[^/]+)/(?P<part>model_store|serving)")


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_storage_uris_name_one_release_under_one_root(overlay: str, tmp_path: Path) -> None:
    """<root>/releases/<model_version>/{model_store,serving}: the layout the deploy step publishes and patches in."""
    isvc = next(d for d in kustomize(overlay, tmp_path, OVERLAYS[overlay]) if d["kind"] == "InferenceService")["spec"]
    env = {e["name"]: e.get("value") for e in isvc["transformer"]["containers"][0]["env"]}
    predictor = RELEASE_URI.fullmatch(isvc["predictor"]["model"]["storageUri"])
    transformer = RELEASE_URI.fullmatch(env["STORAGE_URI"])
    assert predictor and transformer
    assert predictor["part"] == "model_store" and transformer["part"] == "serving"
    assert predictor["root"] == transformer["root"] == STORAGE_ROOTS.get(overlay, BASE_STORAGE_ROOT)
    assert predictor["version"] == transformer["version"] == FIRST_MODEL_VERSION
    # the catalogue change log lives under the same root, in the storage the transformer reads
    args = isvc["transformer"]["containers"][0]["args"]
    root = STORAGE_ROOTS.get(overlay, BASE_STORAGE_ROOT)
    assert [a for a in args if a.startswith("--catalog_changes=")] == [f"--catalog_changes={root}/catalog-changes"]
    assert [a for a in args if a.startswith("--request_log=")] == [f"--request_log={root}/request-log"]
    assert [a for a in args if a.startswith("--event_log=")] == [f"--event_log={root}/events"]


def test_the_schema_check_catches_typos_and_wrong_types() -> None:
    isvc = load("inferenceservice.yaml")
    isvc["spec"]["transformer"]["containers"][0]["readinesProbe"] = isvc["spec"]["transformer"]["containers"][0].pop(
        "readinessProbe"
    )
    isvc["spec"]["predictor"]["minReplicas"] = "one"
    errors = validate_custom_resource(isvc)
    assert any("readinesProbe: unknown field of V1Container" in e for e in errors)
    assert any("minReplicas: expected int" in e for e in errors)


def test_pods_run_as_non_root_with_probes_and_limits() -> None:
    spec = load("inferenceservice.yaml")["spec"]
    for component in ("predictor", "transformer"):
        assert spec[component]["securityContext"]["runAsNonRoot"] is True
    container = spec["transformer"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == f"/v2/models/{MODEL_NAME}/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    for resources in (container["resources"], spec["predictor"]["model"]["resources"]):
        assert set(resources) == {"requests", "limits"}


def apply_json_patch(document: dict, operations: list[dict]) -> dict:
    patched = copy.deepcopy(document)
    for op in operations:
        *parents, leaf = op["path"].strip("/").split("/")
        target = patched
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        assert op["op"] in ("add", "replace")
        if op["op"] == "replace":
            assert (int(leaf) < len(target)) if isinstance(target, list) else leaf in target, op["path"]
        if isinstance(target, list):
            target[int(leaf)] = op["value"]
        else:
            target[leaf] = op["value"]
    return patched


def test_kserve_encoder_overlay_selects_the_no_jvm_runtime_over_grpc() -> None:
    overlay = MANIFESTS / "overlays" / "kserve-encoder"
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    operations = yaml.safe_load((overlay / kustomization["patches"][0]["path"]).read_text())
    isvc = apply_json_patch(load("inferenceservice.yaml"), operations)
    assert validate_custom_resource(isvc) == []
    runtime = load("servingruntime-kserve-encoder.yaml")
    assert isvc["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"]
    assert isvc["spec"]["predictor"]["model"]["modelFormat"]["name"] == runtime["spec"]["supportedModelFormats"][0]["name"]
    assert "--predictor_protocol=grpc-v2" in isvc["spec"]["transformer"]["containers"][0]["args"]
    container = runtime["spec"]["containers"][0]
    assert container["command"] == ["python", f"{IMAGE_KSERVE_DIR}/{LocalKServeEncoder.entrypoint}"]
    local = LocalKServeEncoder(Path("w"), model_store_dir=Path("m")).args()
    assert {a.split("=")[0] for a in container["args"]} == {a.split("=")[0] for a in local}
    assert {p["containerPort"] for p in container["ports"]} == {TRANSFORMER_GRPC_PORT}


def test_the_predictor_uses_every_cpu_it_requests_as_local_serving_does() -> None:
    """TorchServe: one single-threaded worker per CPU; the KServe-hosted encoder: one process, a thread per CPU."""
    predictor = load("inferenceservice.yaml")["spec"]["predictor"]["model"]
    assert predictor["resources"]["requests"]["cpu"] == predictor["resources"]["limits"]["cpu"] == str(PREDICTOR_CPUS)
    assert {e["name"]: e["value"] for e in predictor["env"]}["OMP_NUM_THREADS"] == "1"
    properties = torchserve_properties(TorchServeSettings(), {"v1": "m.mar"})
    assert f"default_workers_per_model={PREDICTOR_CPUS}\n" in properties
    assert f'"minWorkers":{PREDICTOR_CPUS},"maxWorkers":{PREDICTOR_CPUS}' in properties
    runtime = load("servingruntime-kserve-encoder.yaml")["spec"]["containers"][0]
    assert runtime["resources"]["requests"]["cpu"] == runtime["resources"]["limits"]["cpu"] == str(PREDICTOR_CPUS)
    assert {e["name"]: e["value"] for e in runtime["env"]}["OMP_NUM_THREADS"] == str(PREDICTOR_CPUS)
    assert LocalKServeEncoder.torch_threads == PREDICTOR_CPUS and LocalTransformer.torch_threads == 1


def mebibytes(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


def test_the_transformers_memory_holds_a_1m_catalogue_through_a_hot_swap() -> None:
    """The limits against the last 1M-item benchmark (benchmarks/results/million.json): one snapshot within the
    request, two (the hot swap) and the peak within the limit."""
    import json

    measured = json.loads((MANIFESTS.parent / "benchmarks" / "results" / "million.json").read_text())
    memory = measured["transformer_memory"]
    assert measured["items"] >= 1_000_000
    resources = load("inferenceservice.yaml")["spec"]["transformer"]["containers"][0]["resources"]
    assert memory["process_mib_one_snapshot"] < mebibytes(resources["requests"]["memory"])
    assert max(memory["process_mib_two_snapshots"], memory["peak_mib"]) < mebibytes(resources["limits"]["memory"])


def test_the_gpu_overlay_gives_the_predictor_one_gpu_and_keeps_the_rest(tmp_path: Path) -> None:
    isvc = next(d for d in kustomize("overlays/gpu-predictor", tmp_path, {}) if d["kind"] == "InferenceService")
    predictor = isvc["spec"]["predictor"]
    assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert predictor["model"]["resources"]["requests"]["cpu"] == str(PREDICTOR_CPUS)
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in predictor["tolerations"]
    base = load("inferenceservice.yaml")
    assert isvc["spec"]["transformer"] == base["spec"]["transformer"]  # the transformer stays on CPU


def test_each_pod_takes_no_more_requests_than_its_memory_holds() -> None:
    """containerConcurrency (the hard limit per pod) above the autoscaling target, and for the transformer sized from
    its memory limit: two 1M-item snapshots (the last measurement), two requests decoding at once on its CPU pool,
    and every request in flight holding its body and a parsed copy."""
    spec = load("inferenceservice.yaml")["spec"]
    for component in ("predictor", "transformer"):
        assert spec[component]["scaleTarget"] < spec[component]["containerConcurrency"]
    measured = json.loads((MANIFESTS.parent / "benchmarks" / "results" / "million.json").read_text())["transformer_memory"]
    limit_mib = mebibytes(spec["transformer"]["containers"][0]["resources"]["limits"]["memory"])
    decoding_mib = CPU_WORKERS * MAX_REQUEST_PIXELS * 3 / 2**20
    per_request_mib = 2 * MAX_REQUEST_BYTES / 2**20
    fits = int((limit_mib - measured["process_mib_two_snapshots"] - decoding_mib) // per_request_mib)
    assert spec["transformer"]["containerConcurrency"] == fits


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_empty_dir_has_a_size_limit(overlay: str, tmp_path: Path) -> None:
    def empty_dirs(node: Any) -> list[dict[str, Any]]:
        if isinstance(node, dict):
            found = [node["emptyDir"]] if "emptyDir" in node else []
            return found + [d for value in node.values() for d in empty_dirs(value)]
        return [d for value in node for d in empty_dirs(value)] if isinstance(node, list) else []

    found = empty_dirs(kustomize(overlay, tmp_path, OVERLAYS[overlay]))
    assert found and all("sizeLimit" in d for d in found), found


def kserve_pod_labels(component: str, service: str = MODEL_NAME) -> dict[str, str]:
    """The labels KServe puts on a component's pods (what the PodMonitor and these objects select on)."""
    return {"serving.kserve.io/inferenceservice": service, "component": component}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and In/NotIn/Exists matchExpressions) against a set of labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        value, operator = labels.get(expression["key"]), expression["operator"]
        if (operator == "In" and value not in expression["values"]) or (operator == "NotIn" and value in expression["values"]):
            return False
        if (operator == "Exists") != (value is not None) and operator in ("Exists", "DoesNotExist"):
            return False
    return True


def test_two_pods_of_each_component_and_a_drain_keeps_one() -> None:
    spec = load("inferenceservice.yaml")["spec"]
    budgets = {d["metadata"]["name"]: d["spec"] for d in load_all("pdb.yaml")}
    for component in ("predictor", "transformer"):
        assert spec[component]["minReplicas"] >= 2
        (budget,) = [b for b in budgets.values() if selects(b["selector"], kserve_pod_labels(component))]
        assert 1 <= budget["minAvailable"] < spec[component]["minReplicas"]  # a drain can always evict one
        assert not selects(budget["selector"], kserve_pod_labels(component, "another-model"))


def allowed(policies: list[dict[str, Any]], pod: dict[str, str], source_namespace: str, source: dict[str, str]) -> bool:
    """Whether a connection from a pod with labels ``source`` in ``source_namespace`` into ``pod`` (in the policies'
    namespace, "shop") is allowed: pods no policy selects take anything; selected ones only what a rule lets in."""
    applying = [p["spec"] for p in policies if selects(p["spec"]["podSelector"], pod)]
    if not applying:
        return True
    namespace_labels = {"kubernetes.io/metadata.name": source_namespace}
    for policy in applying:
        for rule in policy.get("ingress", []):
            for peer in rule.get("from", []):
                in_namespace = (
                    selects(peer["namespaceSelector"], namespace_labels)
                    if "namespaceSelector" in peer
                    else source_namespace == "shop"
                )
                if in_namespace and ("podSelector" not in peer or selects(peer["podSelector"], source)):
                    return True
    return False


def test_only_the_transformer_is_reachable_from_outside_and_the_encoder_only_through_it() -> None:
    policies = load_all("networkpolicy.yaml")
    transformer, predictor = kserve_pod_labels("transformer"), kserve_pod_labels("predictor")
    activator, gateway, prometheus = (
        ("knative-serving", {"app": "activator"}),
        ("kourier-system", {"app": "3scale-kourier-gateway"}),
        ("monitoring", {"app": "prometheus"}),
    )
    notebook, outsider = ("shop", {"app": "notebook"}), ("team-b", {"app": "curl"})
    for source in (activator, gateway, prometheus, notebook):  # the notebook stands for in-namespace clients and the deploy step
        assert allowed(policies, transformer, *source), source
    for source in (activator, gateway, prometheus, ("shop", transformer)):
        assert allowed(policies, predictor, *source), source
    assert not allowed(policies, predictor, *notebook)  # nothing else in the namespace calls the encoder
    assert not allowed(policies, transformer, *outsider) and not allowed(policies, predictor, *outsider)
    assert allowed(policies, {"app": "unrelated"}, *outsider)  # the policies select only fashionrec's pods
