"""The kserve target's writes through the real kubernetes client against a stand-in of the API server on loopback (no
API server runs here: tests/deploy/kube_api_stand_in.py): the InferenceService goes as the manifests' plain dict to the documented endpoint, carries
its resourceVersion, and a stale one comes back as a conflict. KServeClient's own replace reads attributes of
KServe's generated classes (``inferenceservice.api_version``) and cannot send a dict at all."""

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes.client import ApiClient, Configuration, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from fashionrec.deploy.kserve_target import InferenceServices, is_conflict
from tests.deploy.kube_api_stand_in import ApiServer, KubeApiStandIn, isvc_path

TEMPLATE = Path(__file__).resolve().parents[2] / "manifests" / "base" / "inferenceservice.yaml"
PATH = isvc_path("team-a", "fashionrec")


@pytest.fixture()
def api() -> Iterator[tuple[InferenceServices, type[ApiServer]]]:
    isvc = yaml.safe_load(TEMPLATE.read_text())
    isvc["metadata"].update(namespace="team-a", resourceVersion="7")
    with KubeApiStandIn(isvc) as server:
        yield InferenceServices(CustomObjectsApi(ApiClient(Configuration(host=server.url)))), server.handler


def test_a_dict_goes_to_the_documented_endpoint_with_its_resource_version(api: tuple[InferenceServices, type[ApiServer]]) -> None:
    services, server = api
    isvc = services.get("fashionrec", "team-a")
    changed = copy.deepcopy(isvc)
    changed["spec"]["transformer"]["canaryTrafficPercent"] = 10
    stored = services.replace("fashionrec", changed, "team-a")
    method, path, body = server.seen[-1]
    assert (method, path) == ("PUT", PATH) and body == changed and changed["metadata"]["resourceVersion"] == "7"
    assert stored["metadata"]["resourceVersion"] == "8"


def test_a_stale_resource_version_is_a_conflict(api: tuple[InferenceServices, type[ApiServer]]) -> None:
    services, _ = api
    isvc = services.get("fashionrec", "team-a")
    services.replace("fashionrec", isvc, "team-a")  # moves it on
    with pytest.raises(ApiException) as refused:
        services.replace("fashionrec", isvc, "team-a")
    assert refused.value.status == 409 and is_conflict(refused.value)
    with pytest.raises(ApiException) as missing:
        services.get("another", "team-a")
    assert missing.value.status == 404 and not is_conflict(missing.value)


def test_kserve_clients_replace_cannot_send_the_manifests_dict() -> None:
    """Why the target does not use it: KServeClient.replace reads ``inferenceservice.api_version`` first."""
    from kserve import KServeClient

    isvc = yaml.safe_load(TEMPLATE.read_text())
    with pytest.raises(AttributeError, match="api_version"):
        KServeClient.replace(object.__new__(KServeClient), "fashionrec", isvc, namespace="team-a")
