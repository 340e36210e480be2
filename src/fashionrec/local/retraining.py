"""The local retraining trigger's guard: one triggered retraining at a time in a work dir, and none within the
cooldown of the last (the cluster's trigger asks the KFP API the same: fashionrec.kubeflow.submit.hold_reason).

``WORKDIR/retraining.json`` holds when the last triggered run started and finished, and the pid of a run in flight;
a pid that is no longer alive (a crashed run) does not hold anything."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fashionrec.workdir import WorkDir


class RetrainingHeld(RuntimeError):
    """No retraining now: one is in flight, or the last one started within the cooldown."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return state


def _write(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_suffix(".tmp")
    staged.write_text(json.dumps(state), encoding="utf-8")
    os.replace(staged, path)


def hold_reason(workdir: Path, cooldown_s: float, now: float | None = None) -> str | None:
    state = _read(WorkDir(workdir).retraining_state)
    now = time.time() if now is None else now
    running = state.get("pid")
    if running and state.get("finished") is None and _alive(int(running)):
        return f"a retraining run (pid {running}) is in flight since {time.ctime(state['started'])}"
    started = state.get("started")
    if started is not None and now - float(started) < cooldown_s:
        return f"the last retraining started {(now - float(started)) / 3600:.2f} h ago, within the cooldown of {cooldown_s / 3600:g} h"
    return None


@contextlib.contextmanager
def retraining_slot(workdir: Path, cooldown_s: float) -> Iterator[None]:
    """Hold the work dir's retraining slot for the block; RetrainingHeld (nothing run) when it is taken or cooling."""
    if (reason := hold_reason(workdir, cooldown_s)) is not None:
        raise RetrainingHeld(reason)
    path = WorkDir(workdir).retraining_state
    _write(path, {"started": time.time(), "finished": None, "pid": os.getpid()})
    try:
        yield
    finally:
        _write(path, {**_read(path), "finished": time.time(), "pid": None})
