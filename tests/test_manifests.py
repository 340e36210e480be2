"""The Kubernetes manifests agree with the code that runs locally: names, image, arguments."""

from pathlib import Path

import yaml

from fashionrec.config import MODEL_NAME, PROJECT_IMAGE, TRANSFORMER_GRPC_PORT, TRANSFORMER_HTTP_PORT
from fashionrec.serving import LocalTransformer

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"


def load(name: str) -> dict:  # type: ignore[type-arg]
    document = yaml.safe_load((MANIFESTS / name).read_text())
    assert isinstance(document, dict)
    return document


def test_inference_service_shares_the_model_name_and_image() -> None:
    isvc = load("inferenceservice.yaml")
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["kind"] == "InferenceService"
    assert isvc["metadata"]["name"] == MODEL_NAME
    predictor = isvc["spec"]["predictor"]["model"]
    assert predictor["modelFormat"]["name"] == "pytorch" and predictor["protocolVersion"] == "v2"
    container = isvc["spec"]["transformer"]["containers"][0]
    assert container["image"] == PROJECT_IMAGE
    assert container["command"] == ["python", "-m", "fashionrec.transformer"]


def test_transformer_arguments_match_the_local_run() -> None:
    container = load("inferenceservice.yaml")["spec"]["transformer"]["containers"][0]
    in_cluster = dict(arg.split("=", 1) for arg in container["args"])
    local = dict(arg.split("=", 1) for arg in LocalTransformer(Path("i"), Path("f"), "h:1", Path("w")).args())
    # KServe injects --predictor_host in the cluster; everything else is passed the same way.
    assert set(in_cluster) == set(local) - {"--predictor_host"}
    assert in_cluster["--model_name"] == local["--model_name"] == MODEL_NAME
    assert in_cluster["--predictor_protocol"] == local["--predictor_protocol"] == "v2"
    assert in_cluster["--http_port"] == str(TRANSFORMER_HTTP_PORT) and in_cluster["--grpc_port"] == str(TRANSFORMER_GRPC_PORT)
    assert {p["containerPort"] for p in container["ports"]} == {TRANSFORMER_HTTP_PORT}


def test_kustomization_lists_every_manifest() -> None:
    listed = set(load("kustomization.yaml")["resources"])
    assert listed == {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    service_account = load("serviceaccount.yaml")["metadata"]["name"]
    isvc = load("inferenceservice.yaml")["spec"]
    assert isvc["predictor"]["serviceAccountName"] == isvc["transformer"]["serviceAccountName"] == service_account


def test_core_kubernetes_objects_validate_against_the_api_schema() -> None:
    import kubernetes_validate

    for name in ("serviceaccount.yaml",):
        kubernetes_validate.validate(load(name), "1.30", strict=True)
