"""The daemon hands the heap start-up freed back to the system (supervision.release_startup_memory):
in a fresh interpreter that did what `bankwatch run` does before monitoring (imports, the config's
validators, a config loaded), the trim gives back memory and the RSS falls by what it says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import json
import can, aiomqtt
import bankwatch.daemon.publish, bankwatch.daemon.service
from bankwatch.daemon.config import load_config
from bankwatch.daemon.supervision import _rss_kib, release_startup_memory
load_config("configs/sim-mixed-2s2p.toml")
before = _rss_kib()
freed = release_startup_memory()
print(json.dumps({"before": before, "freed": freed, "after": _rss_kib()}))
"""


def test_start_up_heap_is_released() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, check=True
    )
    figures = json.loads(out.stdout)
    assert figures["freed"] > 256, figures  # KiB: start-up leaves megabytes of freed heap
    assert figures["after"] < figures["before"], figures
