"""What code made an artifact: the git commit and the package versions (model.json and the registry record them).

In a checkout they come from git and the installed distributions; inside an image, from the build-info file that the
image's build wrote (an image has no .git): ``python -m fashionrec.provenance --write --git-commit SHA --image NAME``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from fashionrec.config import IMAGE_BUILD_INFO

# The distributions whose versions change what a model is or how it is served: model.json records these.
KEY_PACKAGES = ("fashionrec", "torch", "torchvision", "numpy", "pillow", "faiss-cpu", "feast", "kfp", "kserve",
                "mlflow-skinny", "great-expectations")  # fmt: skip
GIT_COMMIT_ENV = "FASHIONREC_GIT_COMMIT"


def installed_packages() -> dict[str, str]:
    """Every installed distribution and its version, by lower-case name (what `pip freeze` lists)."""
    found = {}
    for distribution in metadata.distributions():
        name = distribution.metadata["Name"]
        if name:
            found[name.lower()] = distribution.version
    return dict(sorted(found.items()))


def checkout_commit() -> str:
    """HEAD of the checkout this package runs from; ``FASHIONREC_GIT_COMMIT`` or "unknown" outside one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get(GIT_COMMIT_ENV, "unknown")


def build_info(path: Path = Path(IMAGE_BUILD_INFO)) -> dict[str, Any]:
    """{git_commit, image, packages}: the image's build-info file where there is one, else this checkout's."""
    if path.is_file():
        recorded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return recorded
    return {"git_commit": checkout_commit(), "image": "", "packages": installed_packages()}


def built_by(path: Path = Path(IMAGE_BUILD_INFO)) -> dict[str, Any]:
    """What a model card records: the git commit, the image (inside one, else "") and the versions of KEY_PACKAGES
    that are installed (looked up one by one outside an image: a card needs no scan of every distribution)."""
    if path.is_file():
        info = build_info(path)
        packages = {name: info["packages"][name] for name in KEY_PACKAGES if name in info["packages"]}
        return {"git_commit": info["git_commit"], "image": info["image"], "packages": packages}
    packages = {}
    for name in KEY_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            packages[name] = metadata.version(name)
    return {"git_commit": checkout_commit(), "image": "", "packages": packages}


def write_build_info(path: Path, git_commit: str, image: str) -> dict[str, Any]:
    info = {"git_commit": git_commit or "unknown", "image": image, "packages": installed_packages()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help=f"write the build-info file ({IMAGE_BUILD_INFO})")
    parser.add_argument("--git-commit", default="unknown")
    parser.add_argument("--image", default="")
    parser.add_argument("--path", type=Path, default=Path(IMAGE_BUILD_INFO))
    args = parser.parse_args(argv)
    info = write_build_info(args.path, args.git_commit, args.image) if args.write else build_info(args.path)
    print(json.dumps({k: v for k, v in info.items() if k != "packages"} | {"packages": len(info["packages"])}))


if __name__ == "__main__":
    main()
