"""The requirements of some of the project's extras, read from pyproject.toml alone (standard library only).

The Dockerfile runs this before it copies the package's code, so that the layers which install dependencies change
only when pyproject.toml does: a code change rebuilds the last, thin layer only.
Usage: ``python requirements.py pyproject.toml EXTRA[,EXTRA...] [--without EXTRA[,EXTRA...]]``.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

SELF_REFERENCE = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)\[(?P<extras>[^\]]+)\]$")


def requirements(pyproject: dict, extras: list[str], without: list[str] | None = None) -> list[str]:
    """The base dependencies and those of ``extras`` (a self-reference such as ``fashionrec[torch]`` expands to that
    extra's), minus those of the extras in ``without`` (installed in a layer of their own), in order, once each."""
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        raise SystemExit(f"no such extra in pyproject.toml: {', '.join(unknown)}")

    def expand(names: list[str], seen: set[str]) -> list[str]:
        out: list[str] = []
        for extra in names:
            if extra in seen:
                continue
            seen.add(extra)
            for requirement in optional[extra]:
                reference = SELF_REFERENCE.match(requirement.replace(" ", ""))
                if reference and reference.group("name") == project["name"]:
                    out += expand(reference.group("extras").split(","), seen)
                else:
                    out.append(requirement)
        return out

    excluded = set(expand(without or [], set()))
    wanted = [*project.get("dependencies", []), *expand(extras, set())]
    return [r for i, r in enumerate(wanted) if r not in excluded and r not in wanted[:i]]


def main(argv: list[str]) -> None:
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--without"):
        raise SystemExit(__doc__)
    pyproject = tomllib.loads(Path(argv[0]).read_text(encoding="utf-8"))
    without = argv[3].split(",") if len(argv) == 4 else []
    print("\n".join(requirements(pyproject, argv[1].split(","), without)))


if __name__ == "__main__":
    main(sys.argv[1:])
