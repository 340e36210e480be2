"""`make images`: both targets of the Dockerfile, built with docker where an engine runs, else with buildah.

The base is the Dockerfile's BASE_IMAGE (Python 3.11 slim) unless the caller names another. Where it can be neither
found locally nor pulled (no image registry is reachable, as on the project's own build machines), a stand-in of the
same Python is made from Debian's packages (mmdebstrap: python3.11 in a virtual environment at /usr/local, as the
official image has it at /usr/local) and the build says so. The names (registry and tag) are set once here and
recorded, with sizes and build times, in build/images.json, which `fashionrec pipeline compile --image` and the
manifests' kustomize `images:` take from the user.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fashionrec.checkout import project_root
from fashionrec.config import IMAGE_REGISTRY, IMAGE_TAG, PROJECT_IMAGE_NAME, TRANSFORMER_IMAGE_NAME
from fashionrec.console import console
from fashionrec.provenance import checkout_commit

# The Dockerfile's targets, in build order (the transformer's layers are a subset of the pipeline's base).
TARGETS = ("transformer", "pipeline")
# Where a base is missing and cannot be pulled: the same Python from Debian's packages (bookworm's is 3.11).
STAND_IN_BASE = "localhost/fashionrec-python:3.11-bookworm"
STAND_IN_PACKAGES = ("python3.11", "python3.11-venv", "libgomp1", "ca-certificates")
# Read-only into every build where they exist: the host's CA certificates (TLS may be intercepted) and pip's
# configuration with the local package indexes it names. Never committed into a layer.
HOST_BUILD_MOUNTS = ("/etc/ssl/certs", "/etc/pip.conf", "/etc/xdg/pip", "/opt/pypi", "/opt/pypi-more", "/opt/wheels")
DEFAULT_REPORT = Path("build") / "images.json"
BUILDAH_ENV = {"BUILDAH_ISOLATION": "chroot"}  # no user namespaces inside the machines this runs on


@dataclass(frozen=True)
class ImageNames:
    """The two images' names under one registry and tag (``my.registry/team`` and ``1.2``)."""

    registry: str = IMAGE_REGISTRY
    tag: str = IMAGE_TAG

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.:_/-]*", self.registry.rstrip("/")):
            raise ValueError(f"not a registry path: {self.registry!r} (lower case, e.g. my.registry.example/team)")
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", self.tag):
            raise ValueError(f"not an image tag: {self.tag!r}")

    def of(self, target: str) -> str:
        name = {"pipeline": PROJECT_IMAGE_NAME, "transformer": TRANSFORMER_IMAGE_NAME}[target]
        return f"{self.registry.rstrip('/')}/{name}:{self.tag}"

    @property
    def pipeline(self) -> str:
        return self.of("pipeline")

    @property
    def transformer(self) -> str:
        return self.of("transformer")


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, text=True, env={**os.environ, **BUILDAH_ENV}, **kwargs)


def container_tool() -> str:
    """docker when its engine answers, else buildah; which one is said in the build's output."""
    if shutil.which("docker") and run(["docker", "info"], capture_output=True, timeout=30).returncode == 0:
        return "docker"
    if shutil.which("buildah"):
        return "buildah"
    raise RuntimeError("neither a Docker engine nor buildah: install one (`apt-get install buildah`; make test-tools does)")


def image_exists(tool: str, ref: str) -> bool:
    args = [tool, "image", "inspect", ref] if tool == "docker" else [tool, "inspect", "--type", "image", ref]
    return run(args, capture_output=True).returncode == 0


def pulled(tool: str, ref: str, timeout_s: float = 120.0) -> bool:
    try:
        return run([tool, "pull", "-q", ref], capture_output=True, timeout=timeout_s).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def make_stand_in_base(tool: str, suite: str = "bookworm") -> str:
    """STAND_IN_BASE from Debian's packages: a minimal root with python3.11 in a virtual environment at /usr/local."""
    if not shutil.which("mmdebstrap"):
        raise RuntimeError("no base image and no mmdebstrap to make a stand-in: `apt-get install mmdebstrap`")
    with tempfile.TemporaryDirectory(prefix="fashionrec-base-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        run(
            [
                "mmdebstrap",
                "--variant=minbase",
                f"--include={','.join(STAND_IN_PACKAGES)}",
                '--customize-hook=chroot "$1" python3.11 -m venv /usr/local',
                suite,
                str(rootfs),
            ],
            check=True,
            capture_output=True,
        )
        if tool == "docker":
            run(["docker", "import", "--change", "ENV PATH=/usr/local/bin:/usr/bin:/bin", str(rootfs), STAND_IN_BASE], check=True)
            return STAND_IN_BASE
        container = run(["buildah", "from", "scratch"], check=True, capture_output=True).stdout.strip()
        try:
            run(["buildah", "add", container, str(rootfs), "/"], check=True, capture_output=True)
            run(
                ["buildah", "config", "--env", "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
                 "--env", "LANG=C.UTF-8", "--cmd", "python3", container],
                check=True,
            )  # fmt: skip
            run(["buildah", "commit", "-q", container, STAND_IN_BASE], check=True, capture_output=True)
        finally:
            run(["buildah", "rm", container], capture_output=True)
    return STAND_IN_BASE


def dockerfile_base(context: Path) -> str:
    """The Dockerfile's own default BASE_IMAGE."""
    match = re.search(r"^ARG BASE_IMAGE=(\S+)$", (context / "Dockerfile").read_text(encoding="utf-8"), re.MULTILINE)
    if not match:
        raise ValueError("the Dockerfile declares no default BASE_IMAGE")
    return match.group(1)


def resolve_base(tool: str, base: str) -> tuple[str, str]:
    """(the base to build on, what was done to get it)."""
    if image_exists(tool, base):
        return base, f"base {base} (local)"
    if pulled(tool, base):
        return base, f"base {base} (pulled)"
    if image_exists(tool, STAND_IN_BASE):
        return STAND_IN_BASE, f"{base} cannot be pulled here: building on the stand-in {STAND_IN_BASE} (Debian's python3.11)"
    console.print(f"{base} cannot be pulled here: making a stand-in of the same Python from Debian's packages ...")
    return make_stand_in_base(tool), f"{base} cannot be pulled here: built the stand-in {STAND_IN_BASE} (Debian's python3.11)"


def build_command(
    tool: str, target: str, name: str, base: str, git_commit: str, context: Path, torch_index_url: str = ""
) -> list[str]:
    args = [tool, "build", "--target", target, "-t", name, "-f", str(context / "Dockerfile")]
    args += ["--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"GIT_COMMIT={git_commit}", "--build-arg", f"IMAGE_NAME={name}"]
    if torch_index_url:
        args += ["--build-arg", f"TORCH_INDEX_URL={torch_index_url}"]
    if tool == "buildah":
        # --layers: reuse the layer cache between builds (docker does by default); the host's network and its TLS
        # and pip configuration, read-only.
        args += ["--layers", "--network", "host"]
        args += [f"--volume={path}:{path}:ro" for path in HOST_BUILD_MOUNTS if Path(path).exists()]
    return [*args, str(context)]


def image_id(tool: str, ref: str) -> str:
    args = [tool, "image", "inspect", "--format", "{{.Id}}", ref] if tool == "docker" else [tool, "inspect", "--type", "image", "--format", "{{.FromImageID}}", ref]  # fmt: skip
    return run(args, check=True, capture_output=True).stdout.strip()


def image_contents(ref: str, largest: int = 8) -> dict[str, Any]:
    """buildah only: the image's size on disk and its largest installed packages (what dominates it)."""
    container = run(["buildah", "from", "--pull-never", ref], check=True, capture_output=True).stdout.strip()
    try:
        root = Path(run(["buildah", "mount", container], check=True, capture_output=True).stdout.strip())
        total = int(run(["du", "-sb", str(root)], check=True, capture_output=True).stdout.split()[0])
        site = root / "usr/local/lib/python3.11/site-packages"
        sizes = run(["du", "-sb", *map(str, site.iterdir())], check=True, capture_output=True).stdout.splitlines()
        by_size = sorted(((int(s), Path(p).name) for s, p in (line.split("\t", 1) for line in sizes)), reverse=True)
        return {"bytes": total, "largest_packages": {name: size for size, name in by_size[:largest]}}
    finally:
        run(["buildah", "umount", container], capture_output=True)
        run(["buildah", "rm", container], capture_output=True)


def build_images(
    names: ImageNames,
    base: str = "",
    targets: tuple[str, ...] = TARGETS,
    context: Path | None = None,
    report: Path | None = DEFAULT_REPORT,
    torch_index_url: str = "",
    tool: str = "",
) -> dict[str, Any]:
    """Build ``targets`` under ``names``; returns (and writes to ``report``) what was built: names, ids, seconds,
    sizes and what dominates them."""
    context = (context or project_root()).resolve()
    tool = tool or container_tool()
    base, base_note = resolve_base(tool, base or dockerfile_base(context))
    git_commit = checkout_commit()
    console.print(f"building with {tool}; {base_note}; commit {git_commit[:12]}")
    built: dict[str, Any] = {"tool": tool, "base": base, "base_note": base_note, "git_commit": git_commit, "images": {}}
    for target in targets:
        name = names.of(target)
        console.print(f"  [bold]{target}[/bold] -> {name} ...")
        started = time.perf_counter()
        command = build_command(tool, target, name, base, git_commit, context, torch_index_url)
        log = (report.parent if report else Path(tempfile.gettempdir())) / f"image-{target}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w", encoding="utf-8") as sink:
            done = run(command, stdout=sink, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-30:])
            raise RuntimeError(f"building {target} failed (full log: {log}):\n{tail}")
        cached = log.read_text(encoding="utf-8", errors="replace").count("Using cache")
        entry: dict[str, Any] = {"name": name, "id": image_id(tool, name), "seconds": round(seconds, 1), "cached_steps": cached}
        if tool == "buildah":
            entry |= image_contents(name)
        built["images"][target] = entry
        size = f", {entry['bytes'] / 1e9:.2f} GB" if "bytes" in entry else ""
        console.print(f"  [bold]{target}[/bold] built in {seconds:.0f}s ({cached} steps from the layer cache{size})")
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(built, indent=1) + "\n", encoding="utf-8")
    return built
