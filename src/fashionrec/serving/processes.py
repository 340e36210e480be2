"""Running the InferenceService's two containers as local processes on loopback, with the same arguments.

TorchServe (the predictor) and the FAISS transformer each run in their own process group so that stopping them
takes their children (TorchServe's JVM and Python workers) down too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import httpx

from fashionrec.config import (
    CATALOG_POLL_SECONDS,
    IMAGE_KSERVE_DIR,
    LOOPBACK,
    MAR_FILE,
    MAX_REQUEST_BYTES,
    MODEL_NAME,
    MODEL_STORE_DIR,
    PREDICTOR_CPUS,
    RERANK_DEPTH,
    RERANK_VOTERS,
    RERANK_WEIGHT,
    SNAPSHOT_FEATURE_REPO_DIR,
    SNAPSHOT_INDEX_DIR,
    TORCHSERVE_KEY_FILE,
    predictor_model_name,
)
from fashionrec.serving.entrypoints import KSERVE_ENCODER_ENTRYPOINT, TRANSFORMER_ENTRYPOINT, kserve_file
from fashionrec.serving.guard import ADMIN_HEADER
from fashionrec.serving.release import Deployment
from fashionrec.serving.torchserve import (
    TorchServeKeys,
    TorchServeSettings,
    bearer,
    management_headers,
    mar_version,
    torchserve_properties,
)
from fashionrec.storage import absolute_location

# KServe logs a line per request with its latencies by default: ~0.3 ms of the transformer hop on 2 cores, and the
# Prometheus histograms (fashionrec_request_seconds & co.) already carry the same numbers. The manifests pass it too.
QUIET_REQUEST_LOG = "--enable_latency_logging=false"
ADMIN_TOKEN_FILE = "admin.token"


class ServerStartError(RuntimeError):
    """A server did not come up; the message carries the tail of its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass
class ManagedProcess:
    name: str
    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}, cwd=self.cwd, start_new_session=True
        )
        log.close()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise ServerStartError(f"{self.name} exited during start-up:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


def wait_until(check: object, process: ManagedProcess, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.check_alive()
        try:
            if check():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise ServerStartError(f"{what} not ready after {timeout:.0f}s:\n{process.log_tail()}")


@dataclass
class LocalTorchServe:
    model_store_dir: Path  # the package stage's output: config/ + model-store/
    work_dir: Path
    inference_port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    settings: TorchServeSettings = field(default_factory=TorchServeSettings)
    process: ManagedProcess | None = None
    model_version: str = ""  # of the model it was started with (read from the .mar at start)

    @property
    def inference_url(self) -> str:
        return f"http://{LOOPBACK}:{self.inference_port}"

    @property
    def management_url(self) -> str:
        return f"http://{LOOPBACK}:{self.management_port}"

    @property
    def live_store(self) -> Path:
        return self.work_dir.resolve() / MODEL_STORE_DIR

    @property
    def key_file(self) -> Path:
        """Where TorchServe writes its management and inference keys (its working directory, owner-only)."""
        return self.work_dir.resolve() / TORCHSERVE_KEY_FILE

    def management_headers(self) -> dict[str, str]:
        return management_headers(self.key_file)

    def inference_headers(self) -> dict[str, str]:
        """What a direct call of its inference API needs (the transformer reads the key file itself)."""
        return bearer(TorchServeKeys.read(self.key_file).inference)

    def start(self, timeout: float = 180.0) -> None:
        if shutil.which("java") is None:
            raise ServerStartError("TorchServe needs a Java runtime (17+): `make setup` installs one")
        source = self.model_store_dir / MODEL_STORE_DIR / MAR_FILE
        self.work_dir = self.work_dir.resolve()  # TorchServe runs with cwd=work_dir: every path must be absolute
        if not source.is_file():
            raise ServerStartError(f"{source} not found: run the pipeline first")
        # Owner-only before TorchServe writes its keys here (it restricts the file only after writing it).
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir.chmod(0o700)
        self.key_file.unlink(missing_ok=True)  # a previous run's keys: _model_ready waits for this run's
        # A live store of its own: a hot swap adds archives to it without touching the pipeline's output.
        store = self.live_store
        store.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, store / MAR_FILE)
        settings = replace(
            self.settings,
            inference_address=self.inference_url,
            management_address=self.management_url,
            metrics_address=f"http://{LOOPBACK}:{self.metrics_port}",
            grpc_inference_port=free_port(),
            grpc_management_port=free_port(),
            model_store=str(store.resolve()),
            token_auth=True,  # any local process reaches loopback: the management API must not be open to it
        )
        config = self.work_dir / "config.properties"
        self.model_version = mar_version(store / MAR_FILE)
        config.write_text(torchserve_properties(settings, {self.model_version: MAR_FILE}), encoding="utf-8")
        torchserve = shutil.which("torchserve", path=str(Path(sys.executable).parent)) or "torchserve"
        self.process = ManagedProcess(
            "torchserve",
            [torchserve, "--start", "--foreground", "--ncs", "--ts-config", str(config), "--model-store", str(store.resolve())],
            self.work_dir / "torchserve.log",
            env={
                # One torch thread per worker, one worker per CPU (TorchServeSettings.workers = PREDICTOR_CPUS).
                "OMP_NUM_THREADS": "1",
                "LOG_LOCATION": str(self.work_dir / "logs"),
                "METRICS_LOCATION": str(self.work_dir / "logs"),
                "TEMP": str(self.work_dir),
            },
            cwd=self.work_dir,
        )
        self.process.start()
        # /ping says Healthy before the worker has loaded the model: wait on the model's worker status instead.
        wait_until(self._model_ready, self.process, timeout, "TorchServe model")

    def _model_ready(self) -> bool:
        try:
            headers = self.management_headers()
        except (OSError, ValueError):  # TorchServe writes its keys before it listens
            return False
        url = f"{self.management_url}/models/{predictor_model_name(self.model_version)}"
        response = httpx.get(url, headers=headers, timeout=2)
        if response.status_code != 200:
            return False
        return any(w.get("status") == "READY" for entry in response.json() for w in entry.get("workers", []))

    def stop(self) -> None:
        if self.process:
            self.process.stop()


@dataclass
class LocalModelServer:
    """A kserve.ModelServer program of kserve/ (the transformer or the KServe-hosted encoder) as a local process,
    started as its container starts it, on free loopback ports."""

    work_dir: Path  # its log and admin token; its own fields follow
    http_port: int = field(default_factory=free_port, kw_only=True)
    grpc_port: int = field(default_factory=free_port, kw_only=True)
    process: ManagedProcess | None = field(default=None, kw_only=True)
    # The repository API's token (the cluster mounts it from a Secret); only this process's owner can read it.
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(32), kw_only=True, repr=False)
    # Run inside an image instead of this environment: the command that starts a program in the container
    # (fashionrec.images.containers), to which `python <IMAGE_KSERVE_DIR>/<entrypoint> args` is appended.
    container_prefix: list[str] | None = field(default=None, kw_only=True)
    container_owner: tuple[int, int] | None = field(default=None, kw_only=True)  # uid, gid the token is given to
    name: ClassVar[str]  # of its log file
    entrypoint: ClassVar[str]  # the kserve/ program
    torch_threads: ClassVar[int] = 1  # OMP_NUM_THREADS, as its container's env sets it

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def admin_token_file(self) -> Path:
        """Where its token is written for it (and for a local rollout) to read."""
        return self.work_dir.absolute() / ADMIN_TOKEN_FILE

    @property
    def admin_headers(self) -> dict[str, str]:
        return {ADMIN_HEADER: f"Bearer {self.admin_token}"}

    def args(self) -> list[str]:
        """The container's arguments, with local paths and ports."""
        raise NotImplementedError

    def server_args(self) -> list[str]:
        """What every local kserve.ModelServer program gets on top: its ports on loopback only, and the token."""
        return [
            f"--http_port={self.http_port}",
            f"--grpc_port={self.grpc_port}",
            f"--bind_address={LOOPBACK}",
            f"--admin_token_file={self.admin_token_file}",
            QUIET_REQUEST_LOG,
        ]

    def start(self, timeout: float = 120.0) -> None:
        """Start `python kserve/<entrypoint> args` and wait until the model answers ready."""
        self.work_dir = self.work_dir.resolve()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        token_file = self.admin_token_file
        token_file.touch(mode=0o600)
        token_file.write_text(self.admin_token, encoding="utf-8")
        if self.container_owner is not None:
            os.chown(token_file, *self.container_owner)  # still 0600: readable by the container's user only
        if self.container_prefix is None:
            command = [sys.executable, str(kserve_file(self.entrypoint)), *self.args()]
        else:
            command = [*self.container_prefix, "python", f"{IMAGE_KSERVE_DIR}/{self.entrypoint}", *self.args()]
        env = {"OMP_NUM_THREADS": str(self.torch_threads)}
        self.process = ManagedProcess(self.name, command, self.work_dir / f"{self.name}.log", env=env)
        self.process.start()
        ready = f"{self.url}/v2/health/ready"  # every model it serves is loaded
        wait_until(lambda: httpx.get(ready, timeout=2).status_code == 200, self.process, timeout, self.name)

    def stop(self) -> None:
        if self.process:
            self.process.stop()


@dataclass
class LocalKServeEncoder(LocalModelServer):
    """The no-JVM predictor runtime: the same .mar served by fashionrec.serving.kserve_encoder under kserve.ModelServer."""

    model_store_dir: Path
    name: ClassVar[str] = "kserve-encoder"
    entrypoint: ClassVar[str] = KSERVE_ENCODER_ENTRYPOINT  # as the ServingRuntime runs it
    torch_threads: ClassVar[int] = PREDICTOR_CPUS  # one process: a thread per CPU of the pod

    @property
    def inference_url(self) -> str:
        return self.url

    @property
    def served_model(self) -> str:
        """The name its encoder answers to (one per model version)."""
        return predictor_model_name(mar_version(self.model_store_dir / MODEL_STORE_DIR / MAR_FILE))

    def args(self) -> list[str]:
        return [
            f"--model_name={MODEL_NAME}",
            f"--model_dir={self.model_store_dir.resolve()}",
            *self.server_args(),
        ]

    def predictor_host(self, protocol: str) -> str:
        return f"{LOOPBACK}:{self.grpc_port if protocol == 'grpc-v2' else self.http_port}"


@dataclass
class LocalTransformer(LocalModelServer):
    index_dir: Path
    feature_repo: Path
    predictor_host: str  # host:port of the v2 predictor
    predictor_protocol: str = "v2"  # or grpc-v2 (KServe-hosted encoder only)
    predictor_key_file: Path | None = None  # a local TorchServe's key_file.json (its inference key); None: no token
    canary_dir: Path | None = None  # a local rollout's canary (fashionrec.deploy.local_target); KServe splits on a cluster
    catalog_changes: Path | str | None = None  # the catalogue change log it applies live (fashionrec.data.changes): s3:// too
    request_log: Path | str | None = None  # what queries saw, for `fashionrec monitor` (no photos): a .jsonl, a folder, s3://
    event_log: Path | None = None  # JSONL of shoppers' feedback events (fashionrec.serving.feedback)
    monitor_seconds: float | None = None  # how often the live drift window is tested (None: the transformer's default)
    name: ClassVar[str] = "transformer"
    entrypoint: ClassVar[str] = TRANSFORMER_ENTRYPOINT  # as the InferenceService runs it
    served_model: ClassVar[str] = MODEL_NAME

    def args(self) -> list[str]:
        return [
            f"--model_name={MODEL_NAME}",
            f"--predictor_host={self.predictor_host}",
            f"--predictor_protocol={self.predictor_protocol}",
            *([f"--predictor_key_file={self.predictor_key_file.absolute()}"] if self.predictor_key_file is not None else []),
            f"--index_dir={self.index_dir.absolute()}",
            f"--feature_repo={self.feature_repo.absolute()}",
            f"--max_request_bytes={MAX_REQUEST_BYTES}",
            f"--rerank_voters={RERANK_VOTERS}",
            f"--rerank_depth={RERANK_DEPTH}",
            f"--rerank_weight={RERANK_WEIGHT:g}",
            *([f"--canary_dir={self.canary_dir.absolute()}"] if self.canary_dir is not None else []),
            *(
                [
                    f"--catalog_changes={absolute_location(self.catalog_changes)}",
                    f"--catalog_poll_seconds={CATALOG_POLL_SECONDS:g}",
                ]
                if self.catalog_changes is not None
                else []
            ),
            *([f"--request_log={absolute_location(self.request_log)}"] if self.request_log is not None else []),
            *([f"--event_log={self.event_log.absolute()}"] if self.event_log is not None else []),
            *([f"--monitor_seconds={self.monitor_seconds:g}"] if self.monitor_seconds is not None else []),
            *self.server_args(),
        ]


RUNTIMES = ("torchserve", "kserve")
# The transformer reads through live/current/{index,feature_repo}; a hot swap flips live/current.
LIVE_DIR = "live"
LIVE_CURRENT = "current"
LIVE_CANARY = "canary"  # present only during a local rollout's canary


def make_bundle(deployment: Deployment, live_dir: Path) -> Path:
    """A folder linking this deployment's index and Feast repo (what live/current or live/canary point at)."""
    bundle = live_dir / f"bundle-{time.monotonic_ns()}"
    bundle.mkdir(parents=True)
    (bundle / SNAPSHOT_INDEX_DIR).symlink_to(deployment.index_dir.resolve(), target_is_directory=True)
    (bundle / SNAPSHOT_FEATURE_REPO_DIR).symlink_to(deployment.feature_repo.resolve(), target_is_directory=True)
    return bundle


def link_deployment(deployment: Deployment, live_dir: Path) -> Path:
    """Make live_dir/current point at a bundle of this deployment; the transformer is started with
    live_dir/current/index and live_dir/current/feature_repo. The flip is one atomic rename."""
    return point_current(live_dir, make_bundle(deployment, live_dir).name)


def current_bundle(live_dir: Path) -> str:
    """The bundle live_dir/current points at now (to point back at it)."""
    return os.readlink(live_dir / LIVE_CURRENT)


def point_current(live_dir: Path, bundle_name: str, link: str = LIVE_CURRENT) -> Path:
    """Atomically re-point live_dir/current (or another link) at an existing bundle."""
    staged = live_dir / f".{link}-{time.monotonic_ns()}"
    staged.symlink_to(bundle_name, target_is_directory=True)  # relative to live_dir, so a relative live_dir works
    os.replace(staged, live_dir / link)
    return live_dir / link


@contextlib.contextmanager
def serve_locally(
    deployment: Deployment,
    work_dir: Path | None = None,
    runtime: str = "torchserve",
    protocol: str = "v2",
    catalog_changes: Path | None = None,
    request_log: Path | str | None = None,
    monitor_seconds: float | None = None,
    event_log: Path | None = None,
) -> Iterator[tuple[LocalTorchServe | LocalKServeEncoder, LocalTransformer]]:
    """Start the predictor (TorchServe, or the KServe-hosted encoder) and the transformer on free loopback ports;
    stop both on exit, whatever happens. grpc-v2 between them needs the KServe runtime. With ``catalog_changes``
    the transformer applies that catalogue change log live; with ``request_log`` it logs what image queries saw, with
    ``event_log`` the shoppers' feedback events."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if protocol == "grpc-v2" and runtime != "kserve":
        raise ValueError("TorchServe has no v2 gRPC endpoint (its gRPC is its own API): use runtime='kserve' for grpc-v2")
    with contextlib.ExitStack() as stack:
        root = work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fashionrec-serve-")))
        predictor: LocalTorchServe | LocalKServeEncoder
        key_file: Path | None = None  # the KServe-hosted encoder takes no token
        if runtime == "kserve":
            predictor = LocalKServeEncoder(root / "encoder", model_store_dir=deployment.model_store)
            host = predictor.predictor_host(protocol)
        else:
            predictor = LocalTorchServe(deployment.model_store, root / "torchserve")
            host = f"{LOOPBACK}:{predictor.inference_port}"
            key_file = predictor.key_file
        stack.callback(predictor.stop)
        predictor.start()
        # The transformer reads through symlinks that a rollout flips (fashionrec.deploy.local_target).
        current = link_deployment(deployment, root / LIVE_DIR)
        transformer = LocalTransformer(
            root / "transformer",
            index_dir=current / SNAPSHOT_INDEX_DIR,
            feature_repo=current / SNAPSHOT_FEATURE_REPO_DIR,
            predictor_host=host,
            predictor_protocol=protocol,
            predictor_key_file=key_file,
            canary_dir=root / LIVE_DIR / LIVE_CANARY,
            catalog_changes=catalog_changes,
            request_log=request_log,
            monitor_seconds=monitor_seconds,
            event_log=event_log,
        )
        stack.callback(transformer.stop)
        transformer.start()
        yield predictor, transformer
