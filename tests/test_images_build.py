"""The image build's pieces without building: the requirements the Dockerfile installs before the code, names set
once, the build command, compile --image, provenance, what a task's container gets from the launcher's part, and
the publishing workflow against GitHub's schema and
zizmor's audits (both offline). tests/integration/test_images.py builds and runs the images."""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fashionrec.config import PROJECT_IMAGE, TRANSFORMER_IMAGE
from fashionrec.images import containers
from fashionrec.images.build import ImageNames, build_command, dockerfile_base
from fashionrec.images.requirements import requirements
from fashionrec.local.pipeline_runner import with_image
from fashionrec.provenance import KEY_PACKAGES, build_info, built_by, write_build_info

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "images.yml"


def test_requirements_expand_self_references_and_leave_out_the_torch_layer() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pipeline = requirements(pyproject, ["pipeline", "transformer"], without=["torch"])
    assert not any(r.startswith(("torch>", "torchvision", "fashionrec")) for r in pipeline)
    assert "kfp==2.17.0" in pipeline and "kserve==0.21.0" in pipeline and len(pipeline) == len(set(pipeline))
    assert any(r.startswith("torch>") for r in requirements(pyproject, ["encoder"]))
    with pytest.raises(SystemExit, match="no such extra"):
        requirements(pyproject, ["gpu"])


def test_names_are_the_published_ones_by_default_and_a_users_own_otherwise() -> None:
    assert (ImageNames().pipeline, ImageNames().transformer) == (PROJECT_IMAGE, TRANSFORMER_IMAGE)
    mine = ImageNames("my.registry.example/team", "1.2")
    assert mine.pipeline == "my.registry.example/team/fashionrec:1.2"
    with pytest.raises(ValueError, match="tag"):
        ImageNames("my.registry", "1.2 && rm")


def test_buildah_builds_reuse_layers_and_get_the_hosts_tls_and_pip_configuration_read_only() -> None:
    command = build_command("buildah", "pipeline", "r/fashionrec:1", "base:1", "abc123", ROOT)
    assert command[:4] == ["buildah", "build", "--target", "pipeline"] and "--layers" in command
    assert "GIT_COMMIT=abc123" in command and "IMAGE_NAME=r/fashionrec:1" in command and "BASE_IMAGE=base:1" in command
    assert all(arg.endswith(":ro") for arg in command if arg.startswith("--volume="))
    assert "--volume" not in " ".join(build_command("docker", "pipeline", "r/f:1", "b", "c", ROOT))
    assert dockerfile_base(ROOT) == "docker.io/library/python:3.11-slim"


def test_the_dockerfile_installs_dependencies_before_it_copies_the_code() -> None:
    for target in ("transformer", "pipeline"):
        stage = (ROOT / "Dockerfile").read_text().split(f"AS {target}", 1)[1].split("\nFROM ", 1)[0]
        assert stage.index("pip install -r") < stage.index("COPY src ./src"), target


def test_compile_with_an_image_names_only_that_image(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "fashionrec"), "pipeline", "compile", "--out", str(tmp_path), "--image", "my.registry/fashionrec:1.2"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.returncode == 0 and len(list(tmp_path.glob("*.yaml"))) == 3
    for compiled in tmp_path.glob("*.yaml"):
        images = {
            line.split("image:", 1)[1].strip() for line in compiled.read_text().splitlines() if line.strip().startswith("image:")
        }
        assert images == {"my.registry/fashionrec:1.2"}, compiled.name
    with pytest.raises(ValueError, match="not an image"):
        with_image("        image: x\n", "bad name")


def test_a_tasks_inputs_in_object_storage_are_downloaded_where_the_sdk_maps_them_and_local_ones_are_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KFP's launcher copies s3://BUCKET/KEY to /s3/BUCKET/KEY before the task starts; kfp.local does not (the
    bucket is a local folder here: storage() stands in for S3)."""
    from fsspec.implementations.local import LocalFileSystem

    bucket = tmp_path / "bucket"
    (bucket / "requests").mkdir(parents=True)
    (bucket / "requests" / "part-1.jsonl").write_text("{}\n")
    monkeypatch.setattr(containers, "storage", lambda uri: (LocalFileSystem(), str(bucket / uri.split("/", 3)[3])))
    executor_input = {
        "inputs": {
            "artifacts": {
                "request_log": {"artifacts": [{"uri": "s3://logs/requests"}]},
                "model": {"artifacts": [{"uri": str(tmp_path / "pipeline_root" / "model")}]},
            }
        }
    }
    command = ["sh", "-c", "program", "--executor_input", json.dumps(executor_input), "--function_to_execute", "f"]
    assert containers.executor_input_of(command) == executor_input
    staging = tmp_path / "staging"
    volumes = containers.download_remote_inputs(containers.executor_input_of(command), staging, owner=None)
    assert volumes == [f"{staging / 's3'}:/s3:rw"]
    assert (staging / "s3" / "logs" / "requests" / "part-1.jsonl").read_text() == "{}\n"
    assert sorted(p.name for p in staging.rglob("*")) == ["logs", "part-1.jsonl", "requests", "s3"]
    with pytest.raises(ValueError, match="--executor_input"):
        containers.executor_input_of(["python", "-m", "program"])


def test_an_images_build_info_is_what_provenance_reports(tmp_path: Path) -> None:
    path = tmp_path / "build-info.json"
    write_build_info(path, "abc123", "r/fashionrec:1")
    info = build_info(path)
    assert info["git_commit"] == "abc123" and info["image"] == "r/fashionrec:1" and "numpy" in info["packages"]
    outside = build_info(tmp_path / "absent.json")
    assert outside["image"] == "" and len(outside["git_commit"]) >= 7
    assert json.loads(path.read_text())["packages"]["numpy"] == info["packages"]["numpy"]
    in_image, in_checkout = built_by(path), built_by(tmp_path / "absent.json")
    assert in_image["image"] == "r/fashionrec:1" and set(in_image["packages"]) <= set(KEY_PACKAGES)
    assert in_checkout["packages"]["numpy"] == info["packages"]["numpy"] and in_checkout["git_commit"] == outside["git_commit"]


def test_the_publishing_workflow_passes_githubs_schema_and_zizmors_audits() -> None:
    bin_dir = Path(sys.executable).parent
    schema = subprocess.run(
        [str(bin_dir / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
    )
    assert schema.returncode == 0, schema.stdout + schema.stderr
    audit = subprocess.run([str(bin_dir / "zizmor"), "--offline", str(WORKFLOW)], capture_output=True, text=True)
    assert audit.returncode == 0, audit.stdout + audit.stderr
