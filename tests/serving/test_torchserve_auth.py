"""TorchServe's locks without a server: config.properties admits archives of the model store only and turns token
auth on for local serving; the clients carry the keys of key_file.json (and re-read them when TorchServe has new
ones). The same against a real TorchServe: tests/integration/test_serving.py."""

import asyncio
import json
import re
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kserve.errors import ServerNotReady

from fashionrec.config import EMBEDDING_DIM, TORCHSERVE_KEY_FILE
from fashionrec.deploy.local_target import LocalRolloutError, LocalServing
from fashionrec.serving.predictor_client import make_predictor
from fashionrec.serving.processes import LocalTransformer
from fashionrec.serving.torchserve import TorchServeSettings, management_headers, torchserve_properties


def properties(settings: TorchServeSettings) -> dict[str, str]:
    """config.properties as java.util.Properties reads it (a backslash escapes the next character)."""
    text = torchserve_properties(settings, {"v1": "fashionrec.mar"})
    return {key: re.sub(r"\\(.)", r"\1", value) for key, value in (line.split("=", 1) for line in text.splitlines())}


def write_keys(path: Path, management: str, inference: str) -> Path:
    keys = {"management": {"key": management}, "inference": {"key": inference}, "API": {"key": "api"}}
    path.write_text(json.dumps(keys), encoding="utf-8")
    return path


@pytest.mark.parametrize("store", ["/mnt/models/model-store", "/tmp/pytest-of-me/serve (1)/model-store"])
def test_only_archives_of_the_model_store_may_be_registered(store: str) -> None:
    allowed = [re.compile(p, re.IGNORECASE) for p in properties(TorchServeSettings(model_store=store))["allowed_urls"].split(",")]

    def admitted(url: str) -> bool:
        return any(p.fullmatch(url) for p in allowed)

    assert admitted(f"file://{store}/fashionrec-abc123.mar")
    for url in (
        "https://example.com/shelltorch.mar",  # TorchServe's default admits every http(s):// and file:// URL
        "http://127.0.0.1:9/fashionrec.mar",
        "file:///tmp/fashionrec.mar",
        f"file://{store}-other/fashionrec.mar",
        f"file://{store}/sub/fashionrec.mar",
        f"file://{store}/fashionrec.zip",
    ):
        assert not admitted(url), url


def test_a_model_store_with_a_comma_is_refused_rather_than_split() -> None:
    with pytest.raises(ValueError, match="splits allowed_urls"):
        torchserve_properties(TorchServeSettings(model_store="/a,b"), {"v1": "fashionrec.mar"})


def test_token_auth_is_on_for_local_serving_and_off_where_kserve_calls_torchserve() -> None:
    cluster = properties(TorchServeSettings())
    assert cluster["disable_token_authorization"] == "true" and "token_expiration_min" not in cluster
    local = properties(TorchServeSettings(token_auth=True))
    assert local["disable_token_authorization"] == "false"
    assert float(local["token_expiration_min"]) >= 60 * 24 * 365  # keys outlive any local session: never renewed


def test_management_calls_carry_the_management_key_read_at_each_call(tmp_path: Path) -> None:
    keys = write_keys(tmp_path / TORCHSERVE_KEY_FILE, "m-1", "i-1")
    assert management_headers(keys) == {"Authorization": "Bearer m-1"}
    write_keys(keys, "m-2", "i-2")  # TorchServe restarted
    assert management_headers(keys) == {"Authorization": "Bearer m-2"}
    assert management_headers(None) == {}  # no token auth
    url = "http://127.0.0.1:9"
    serving = LocalServing(url, tmp_path, url, tmp_path / "t", tmp_path / "live", url, "", tmp_path / "missing.json")
    with pytest.raises(LocalRolloutError, match="key file"):
        serving.management_headers()


def test_the_state_file_names_the_key_file_not_a_key(tmp_path: Path) -> None:
    keys = write_keys(tmp_path / TORCHSERVE_KEY_FILE, "m-secret", "i-secret")
    url = "http://127.0.0.1:9"
    path = LocalServing(url, tmp_path, url, tmp_path / "t", tmp_path / "live", url, "", keys).save(tmp_path)
    state = json.loads(path.read_text())
    assert state["predictor_key_file"] == str(keys) and "secret" not in path.read_text()
    assert (
        json.loads(LocalServing(url, tmp_path, url, tmp_path / "t", tmp_path / "live", url).save(tmp_path).read_text())[
            "predictor_key_file"
        ]
        == ""
    )


def test_the_transformer_is_given_the_key_file_only_for_a_torchserve_with_keys(tmp_path: Path) -> None:
    def args(**kwargs: object) -> list[str]:
        transformer = LocalTransformer(tmp_path, index_dir=tmp_path, feature_repo=tmp_path, predictor_host="h:1", **kwargs)  # type: ignore[arg-type]
        return [a for a in transformer.args() if a.startswith("--predictor_key_file")]

    assert args() == []
    assert args(predictor_key_file=tmp_path / TORCHSERVE_KEY_FILE) == [f"--predictor_key_file={tmp_path / TORCHSERVE_KEY_FILE}"]
    with pytest.raises(ValueError, match="v2 REST"):
        make_predictor("grpc-v2", "h:1", key_file=tmp_path / TORCHSERVE_KEY_FILE)


def encoder_app(accepted: list[str], seen: list[str | None]) -> web.Application:
    """A v2 encoder that, like TorchServe with token auth, refuses any other key with a 400 InvalidKeyException."""

    async def infer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != f"Bearer {accepted[0]}":
            refusal = {"code": 400, "type": "InvalidKeyException", "message": "Token Authorization failed."}
            return web.json_response(refusal, status=400)
        output = {"name": "embedding", "datatype": "FP32", "shape": [1, EMBEDDING_DIM], "data": [0.0] * EMBEDDING_DIM}
        return web.json_response({"model_version": "v1", "outputs": [output]})

    app = web.Application()
    app.router.add_post("/v2/models/{name}/infer", infer)
    return app


def test_the_predictor_client_sends_the_inference_key_and_rereads_it_once_when_refused(tmp_path: Path) -> None:
    keys = write_keys(tmp_path / TORCHSERVE_KEY_FILE, "m-1", "i-1")
    accepted, seen = ["i-1"], list[str | None]()

    async def scenario() -> None:
        async with TestServer(encoder_app(accepted, seen)) as server:
            client = make_predictor("v2", f"127.0.0.1:{server.port}", key_file=keys)
            try:
                assert (await client.embed([b"x"], None, None, "v1")).vectors.shape == (1, EMBEDDING_DIM)
                write_keys(keys, "m-2", "i-2")  # TorchServe restarted with new keys
                accepted[0] = "i-2"
                embedded = await client.embed([b"x"], None, None, "v1")
                assert np.asarray(embedded.vectors).shape == (1, EMBEDDING_DIM)
                accepted[0] = "nobody's"  # a key it never wrote: a server fault (503), not the shopper's (400)
                with pytest.raises(ServerNotReady, match="refused the inference key"):
                    await client.embed([b"x"], None, None, "v1")
            finally:
                await client.close()

    asyncio.run(scenario())
    assert seen == ["Bearer i-1", "Bearer i-1", "Bearer i-2", "Bearer i-2", "Bearer i-2"]
