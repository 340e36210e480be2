"""The local trigger's guard: a second trigger while a run is in flight, or within the cooldown, runs nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fashionrec.local.retraining import RetrainingHeld, hold_reason, retraining_slot
from fashionrec.workdir import WorkDir


def test_one_run_at_a_time_and_none_within_the_cooldown(tmp_path: Path) -> None:
    ran = []
    with retraining_slot(tmp_path, cooldown_s=3600):
        ran.append("first")
        with pytest.raises(RetrainingHeld, match="in flight"), retraining_slot(tmp_path, cooldown_s=0):
            ran.append("during")
    with pytest.raises(RetrainingHeld, match="within the cooldown of 1 h"), retraining_slot(tmp_path, cooldown_s=3600):
        ran.append("soon after")
    assert hold_reason(tmp_path, cooldown_s=3600, now=time.time() + 7200) is None  # two hours later
    with retraining_slot(tmp_path, cooldown_s=0):
        ran.append("no cooldown")
    assert ran == ["first", "no cooldown"]


def test_a_crashed_run_does_not_hold_the_slot(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    state = {"started": time.time() - 7200, "finished": None, "pid": int(dead.stdout)}
    WorkDir(tmp_path).retraining_state.write_text(json.dumps(state))
    assert hold_reason(tmp_path, cooldown_s=3600) is None
