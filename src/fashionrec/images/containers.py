"""Programs run inside the project's images with buildah, as a cluster runs them: KFP tasks and the servers.

KFP tasks: kfp.local's DockerRunner builds each task's executor input, fills in the compiled command's placeholders
and mounts the pipeline root, exactly as for Docker; only the container itself is started with `buildah run` instead
of a Docker engine (none runs on the project's build machines), after doing what KFP's launcher does on a cluster
and kfp.local does not: input artifacts in object storage (an importer's s3:// URI) are downloaded to the local path
the SDK maps them to (/s3/BUCKET/KEY). Everything else is kfp.local's own code.
Servers: the command that starts a kserve/ program inside an image (fashionrec.serving.processes runs it).

Every container runs as uid 1000 (as the images' USER and the manifests' securityContext), on the host's network
(the loopback servers a test starts), with host folders mounted at the same paths.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from fashionrec.images.build import BUILDAH_ENV, run
from fashionrec.serving.processes import LocalModelServer
from fashionrec.storage import storage

CONTAINER_USER = "1000:1000"  # the images' USER
REMOTE_URI_PREFIXES = ("s3://", "gs://", "minio://")  # what KFP's launcher downloads for a task (kfp.dsl.Artifact.path)
EXECUTOR_INPUT_FLAG = "--executor_input"  # the compiled components' argument carrying the executor input JSON


@dataclass(frozen=True)
class ContainerSettings:
    """What every container started here gets beyond the image: host folders at the same path, and environment."""

    mounts: tuple[Path, ...] = ()  # read-write, at the same path inside
    read_only_mounts: tuple[Path, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    user: str = CONTAINER_USER
    volumes: tuple[str, ...] = ()  # HOST:CONTAINER:MODE, as kfp.local asks for them

    def owner(self) -> tuple[int, int]:
        uid, gid = (int(part) for part in self.user.split(":"))
        return uid, gid

    def volume_args(self) -> list[str]:
        rw = [f"--volume={p.resolve()}:{p.resolve()}:rw" for p in self.mounts]
        ro = [f"--volume={p.resolve()}:{p.resolve()}:ro" for p in self.read_only_mounts]
        return rw + ro + [f"--volume={volume}" for volume in self.volumes]

    def env_args(self, extra: Mapping[str, str] | None = None) -> list[str]:
        return [f"--env={k}={v}" for k, v in {**self.env, **(extra or {})}.items()]  # over the image's own ENV


def buildah(*args: str) -> str:
    done = run(["buildah", *args], capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"buildah {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def new_container(image: str, purpose: str) -> str:
    """A working container of ``image`` (never pulled: the images are the ones built here)."""
    return buildah("from", "--pull-never", "--name", f"fashionrec-{purpose}-{secrets.token_hex(4)}", image)


def remove_container(container: str) -> None:
    with contextlib.suppress(RuntimeError):
        buildah("rm", container)


def run_command(
    container: str, command: list[str], settings: ContainerSettings, extra_env: Mapping[str, str] | None = None
) -> list[str]:
    """The `buildah run` command line that runs ``command`` in ``container``."""
    return [
        "buildah",
        "run",
        "--isolation=chroot",
        "--network=host",
        f"--user={settings.user}",
        *settings.volume_args(),
        *settings.env_args(extra_env),
        container,
        "--",
        *command,
    ]


def run_to_completion(
    image: str, command: list[str], settings: ContainerSettings, extra_env: Mapping[str, str] | None = None
) -> int:
    """Run ``command`` in a fresh container of ``image``; its output is printed as it comes (kfp.local indents it)."""
    container = new_container(image, "task")
    try:
        args = run_command(container, command, settings, extra_env)
        with subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **BUILDAH_ENV}
        ) as process:
            assert process.stdout is not None
            for line in process.stdout:
                print(line, end="")
            return process.wait()
    finally:
        remove_container(container)


def executor_input_of(command: list[str]) -> dict[str, Any]:
    """The executor input kfp.local put into a task's command (the value after ``--executor_input``)."""
    if EXECUTOR_INPUT_FLAG not in command:
        raise ValueError(f"a task command without {EXECUTOR_INPUT_FLAG}: {command[:3]}")
    return dict(json.loads(command[command.index(EXECUTOR_INPUT_FLAG) + 1]))


def download_remote_inputs(executor_input: Mapping[str, Any], staging: Path, owner: tuple[int, int] | None) -> list[str]:
    """What KFP's launcher does before a task starts: every input artifact in object storage is copied to the local
    path the SDK maps its URI to (s3://BUCKET/KEY -> /s3/BUCKET/KEY, gs:// -> /gcs/, minio:// -> /minio/), owned by
    the pod's user. Returns the volumes (HOST:CONTAINER:MODE) that put those paths into the container."""
    from kfp import dsl

    prefixes: set[str] = set()
    for entry in (executor_input.get("inputs") or {}).get("artifacts", {}).values():
        for artifact in entry.get("artifacts", []):
            uri = str(artifact.get("uri", ""))
            if not uri.startswith(REMOTE_URI_PREFIXES):
                continue
            local = Path(dsl.Artifact(uri=uri).path)  # the SDK's own mapping: what the component reads
            target = staging / local.relative_to("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            fs, key = storage(uri)
            if fs.isdir(key):
                fs.get(f"{key.rstrip('/')}/", str(target), recursive=True)
            else:
                fs.get(key, str(target))
            prefixes.add(local.parts[1])
    if owner is not None:
        for folder, _, files in os.walk(staging):
            for name in [folder, *(os.path.join(folder, f) for f in files)]:
                os.chown(name, *owner)
    return [f"{staging / prefix}:/{prefix}:rw" for prefix in sorted(prefixes)]


@contextlib.contextmanager
def kfp_tasks_in_images(settings: ContainerSettings) -> Iterator[Any]:
    """A kfp.local DockerRunner whose tasks run with buildah in their images (the image each task's compiled
    executor names), for the duration of the block: ``local.init(runner=...)`` takes what this yields."""
    from kfp import local
    from kfp.local import docker_task_handler, status

    handler_class = docker_task_handler.DockerTaskHandler
    original = handler_class.run

    def run_with_buildah(handler: Any) -> Any:
        volumes = handler.get_volumes_to_mount()  # kfp.local's: the pipeline root (and a workspace), read-write
        mounted = [f"{host}:{spec['bind']}:{spec['mode'].split(',')[0]}" for host, spec in volumes.items()]
        with tempfile.TemporaryDirectory(prefix="fashionrec-launcher-") as staging:
            owner = settings.owner() if os.geteuid() == 0 else None
            downloaded = download_remote_inputs(executor_input_of(handler.full_command), Path(staging), owner)
            task_settings = replace(settings, volumes=(*mounted, *downloaded))
            code = run_to_completion(handler.image, handler.full_command, task_settings, handler.env_vars)
        return status.Status.SUCCESS if code == 0 else status.Status.FAILURE

    handler_class.run = run_with_buildah
    try:
        yield local.DockerRunner()
    finally:
        handler_class.run = original


Server = TypeVar("Server", bound=LocalModelServer)


# What `buildah run` itself puts into a container's root: the network files it binds and the mount points it makes.
BUILDAH_OWN_FILES = ("etc/hosts", "etc/resolv.conf", "etc/hostname")
BUILDAH_OWN_FOLDERS = ("run/",)


class RootFilesystemWriteError(RuntimeError):
    """A program wrote into its container's root filesystem where its manifest's readOnlyRootFilesystem refuses."""


def root_writes(container: str, writable: tuple[str, ...]) -> list[str]:
    """The files a container wrote into its own root filesystem (its writable layer: overlay's ``diff`` beside the
    ``merged`` tree `buildah mount` gives) outside the ``writable`` folders (the volumes its manifest mounts there),
    besides what buildah run puts there itself. `buildah run` has no read-only root; this is what one would refuse."""
    merged = Path(buildah("mount", container))
    try:
        upper = merged.parent / "diff"
        if merged.name != "merged" or not upper.is_dir():
            raise RuntimeError(f"not an overlay container ({merged}): its writes cannot be listed")
        written = [str(p.relative_to(upper)) for p in upper.rglob("*") if not p.is_dir()]
    finally:
        buildah("umount", container)
    allowed = tuple(f"{folder.strip('/')}/" for folder in writable)
    return sorted(
        path for path in written if path not in BUILDAH_OWN_FILES and not path.startswith(BUILDAH_OWN_FOLDERS + allowed)
    )


@contextlib.contextmanager
def serving_in_image(
    server: Server, image: str, settings: ContainerSettings, read_only_root: tuple[str, ...] | None = None
) -> Iterator[Server]:
    """``server`` (a kserve/ program: the transformer, the KServe-hosted encoder) started inside a container of
    ``image`` with its usual arguments, as its manifest runs it; stopped and removed after the block. Its work dir
    and the folders its arguments name must be among ``settings``' mounts. With ``read_only_root`` (the folders
    its manifest mounts writable, e.g. an emptyDir at /tmp), a file it wrote anywhere else in the container's root
    fails the block once the server has stopped (RootFilesystemWriteError), as readOnlyRootFilesystem would."""
    container = new_container(image, server.name)
    server.container_prefix = run_command(container, [], settings, {"OMP_NUM_THREADS": str(server.torch_threads)})
    server.container_owner = settings.owner()
    try:
        server.start()
        yield server
        server.stop()
        if read_only_root is not None and (written := root_writes(container, read_only_root)):
            raise RootFilesystemWriteError(
                f"{server.name} wrote into its read-only root filesystem (writable: {list(read_only_root)}): {written[:10]}"
            )
    finally:
        server.stop()
        remove_container(container)
