"""Active alerts across a restart of the daemon: a small JSON file per bank.

A restart (an upgrade, a reboot, a crash) must neither forget an active alert nor raise it a
second time. `bankwatch run` keeps the active alerts, and the SOC drift history the detectors
need to judge a slow divergence, in `<state_dir>/alerts-<bank>.json`:

- written only when something changed (an alert raised, updated or cleared; at most once an
  hour for the drift history) and at a clean stop: an SD card is not worn out by a monitor;
- written atomically (a temporary file in the same folder, flushed to disk, then renamed over
  the old one), so a power cut leaves the old file or the new one, never half of one;
- times are stored as wall-clock seconds, since the monotonic clock starts again at boot, and
  mapped back onto this run's clock when loaded;
- a missing file is a first start; an unreadable or corrupt one is logged and set aside, and
  the daemon starts with no alerts rather than not at all.

The folder is `[detect] state_dir`, else `$STATE_DIRECTORY` (systemd's `StateDirectory=`), else
`$XDG_STATE_HOME/bankwatch`, else `~/.local/state/bankwatch`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bankwatch.daemon.alerts import RANK, Alert

__all__ = ["STATE_VERSION", "AlertStore", "SavedState", "default_state_dir"]

log = logging.getLogger(__name__)

STATE_VERSION = 1


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    # systemd may pass several folders, colon-separated, when the unit names several.
    systemd = env.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd)
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg:
        return Path(xdg) / "bankwatch"
    return Path(env.get("HOME", str(Path.home()))) / ".local" / "state" / "bankwatch"


@dataclass(frozen=True, slots=True)
class SavedState:
    """What a previous run left: its active alerts (on this run's clock) and the detector
    memory it saved, with the shift that maps that memory's times onto this run's clock."""

    alerts: tuple[Alert, ...] = ()
    memory: Mapping[str, Any] = field(default_factory=dict)
    shift_s: float = 0.0


class AlertStore:
    def __init__(self, directory: Path, bank: str) -> None:
        self.directory = directory
        self.path = directory / f"alerts-{bank}.json"
        self.bank = bank
        self._failing = False

    def load(self, now_mono: float, now_wall: float) -> SavedState:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return SavedState()
        except OSError as exc:
            log.warning("alert state %s: cannot read (%s); starting with no alerts", self.path, exc)
            return SavedState()
        try:
            data = json.loads(text)
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {STATE_VERSION}")
            offset = now_mono - now_wall  # wall time + offset = this run's monotonic time
            alerts = tuple(_alert_from(a, offset) for a in data.get("alerts", []))
            saved_wall = float(data["saved_wall"])
            saved_mono = float(data["saved_monotonic"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            aside = self.path.with_suffix(".json.corrupt")
            log.warning(
                "alert state %s is corrupt (%s); set aside as %s, starting with no alerts",
                self.path,
                exc,
                aside.name,
            )
            try:
                os.replace(self.path, aside)
            except OSError as exc2:
                log.warning("cannot set %s aside: %s", self.path, exc2)
            return SavedState()
        memory = data.get("memory") or {}
        # The memory's times are the old run's monotonic ones: old mono → wall → new mono.
        shift = (saved_wall - saved_mono) + offset
        return SavedState(alerts, memory if isinstance(memory, dict) else {}, shift)

    def save(
        self,
        alerts: Iterable[Alert],
        memory: Mapping[str, Any],
        now_mono: float,
        now_wall: float,
    ) -> bool:
        """Write the file atomically; False (logged once per failing stretch) when it cannot."""
        offset = now_wall - now_mono  # monotonic + offset = wall time
        data = {
            "version": STATE_VERSION,
            "bank": self.bank,
            "saved_wall": round(now_wall, 3),
            "saved_monotonic": round(now_mono, 3),
            "alerts": [
                _alert_to(a, offset)
                for a in sorted(alerts, key=lambda a: (-RANK[a.severity], a.id))
            ],
            "memory": dict(memory),
        }
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".alerts-", suffix=".tmp", dir=self.directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(data, f, indent=1, allow_nan=False)
                    f.write("\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            _fsync_dir(self.directory)
        except (OSError, ValueError) as exc:
            if not self._failing:
                log.warning(
                    "cannot save alert state to %s (%s); alerts will not survive a restart "
                    "until this is fixed",
                    self.path,
                    exc,
                )
            self._failing = True
            return False
        if self._failing:
            log.info("alert state saved to %s again", self.path)
        self._failing = False
        return True


def _fsync_dir(directory: Path) -> None:
    """The rename is only durable once the folder's entry is on disk too."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _alert_to(a: Alert, offset: float) -> dict[str, Any]:
    return {
        "id": a.id,
        "kind": a.kind,
        "subject": a.subject,
        "severity": a.severity,
        "message": a.message,
        "gist": a.gist,
        "evidence": dict(a.evidence),
        "raised_wall": round(a.raised_at + offset, 3),
    }


def _alert_from(d: Mapping[str, Any], offset: float) -> Alert:
    severity = d["severity"]
    if severity not in RANK:
        raise ValueError(f"unknown severity {severity!r}")
    evidence = d.get("evidence", {})
    if not isinstance(evidence, dict):
        raise ValueError("evidence is not an object")
    kind, subject = str(d["kind"]), str(d["subject"])
    return Alert(
        id=f"{kind}:{subject}",
        kind=kind,
        subject=subject,
        severity=severity,
        message=str(d["message"]),
        evidence=evidence,
        raised_at=float(d["raised_wall"]) + offset,
        gist=str(d.get("gist", d["message"])),
    )
