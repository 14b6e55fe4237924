"""systemd/install.sh against a scratch root (`--root DIR`): the layout the README's Raspberry Pi
guide describes, an upgrade that keeps config, credentials and state, an uninstall that keeps
them unless --purge, and no systemctl call in that mode. Then `systemd-analyze` checks the
installed unit (verify, and the security exposure the issue targets: 1.5 or lower).

The package is installed from a wheel built from this checkout, without its dependencies
(`--pip-args "--no-deps --no-index"`: no download); the installed command finds them through
PYTHONPATH pointing at the test venv's site-packages, and the test checks it runs the installed
copy of bankwatch, not the checkout.
"""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.helpers import REPO

SCRIPT = REPO / "systemd" / "install.sh"
README = REPO / "README.md"
LAYOUT_MARKER = "<!-- install-layout -->"
SITE_PACKAGES = sysconfig.get_paths()["purelib"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout, built from a copy so the work tree gets no build/ folder."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("daemon", "drivers"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (whl,) = out.glob("bankwatch-*.whl")
    return whl


def make_spy(folder: Path) -> Path:
    """A `systemctl` first on PATH (see `install`) that only records that it was called."""
    bin_dir = folder / "spy-bin"
    bin_dir.mkdir()
    calls = folder / "systemctl-calls"
    tool = bin_dir / "systemctl"
    tool.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    tool.chmod(0o755)
    return calls


@pytest.fixture
def spy(tmp_path: Path) -> Path:
    return make_spy(tmp_path)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> tuple[Path, Path, str]:
    """One fresh install, shared by the tests that only look at it: (root, spy, stdout)."""
    folder = tmp_path_factory.mktemp("fresh")
    spy = make_spy(folder)
    root = folder / "root"
    done = install(root, wheel, spy)
    assert done.returncode == 0, done.stdout + done.stderr
    return root, spy, done.stdout


def install(root: Path, wheel: Path, spy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=SITE_PACKAGES)
    env["PATH"] = f"{spy.parent / 'spy-bin'}:{env['PATH']}"
    return subprocess.run(
        [
            "bash",
            str(SCRIPT),
            "--root",
            str(root),
            "--from",
            str(wheel),
            "--python",
            sys.executable,
            "--pip-args",
            "--no-deps --no-index",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def readme_layout() -> list[str]:
    """The paths of the guide's layout block (the fenced block after LAYOUT_MARKER)."""
    lines = [line.strip() for line in README.read_text(encoding="utf-8").splitlines()]
    assert LAYOUT_MARKER in lines, f"README.md has no {LAYOUT_MARKER} block"
    i = lines.index(LAYOUT_MARKER) + 1
    assert lines[i].startswith("```")
    block = []
    for line in lines[i + 1 :]:
        if line.startswith("```"):
            break
        block.append(line.split()[0])
    return block


def test_fresh_install_produces_the_layout_of_the_guide(fresh: tuple[Path, Path, str]) -> None:
    root, spy, stdout = fresh
    assert "installed a starting config" in stdout
    assert not spy.exists(), f"systemctl was called with --root: {spy.read_text()}"

    layout = readme_layout()
    assert "/etc/bankwatch/bankwatch.toml" in layout and "/opt/bankwatch/venv/" in layout
    for path in layout:
        if path.startswith("/var/lib/"):
            continue  # made by systemd at the first start (StateDirectory=)
        assert (root / path.lstrip("/")).exists() or (root / path.lstrip("/")).is_symlink(), path

    etc = root / "etc/bankwatch"
    assert mode(etc) == 0o755
    assert mode(etc / "bankwatch.toml") == 0o644  # no secrets in it: those are credentials
    assert mode(etc / "credentials") == 0o700
    unit = root / "etc/systemd/system/bankwatch.service"
    assert filecmp.cmp(unit, REPO / "systemd/bankwatch.service", shallow=False)
    assert mode(unit) == 0o644
    link = root / "usr/local/bin/bankwatch"
    assert os.readlink(link) == "/opt/bankwatch/venv/bin/bankwatch"
    share = root / "opt/bankwatch/share"
    for name in ("80-can0.network", "99-bankwatch-serial.rules", "bankwatch.service"):
        assert filecmp.cmp(share / "systemd" / name, REPO / "systemd" / name, shallow=False)
    assert sorted(p.name for p in (share / "configs").glob("*.toml")) == sorted(
        p.name for p in (REPO / "configs").glob("*.toml")
    )
    assert not (root / "var").exists()

    # The installed command is the installed copy, and it accepts the installed config.
    exe = root / "opt/bankwatch/venv/bin/bankwatch"
    env = dict(os.environ, PYTHONPATH=SITE_PACKAGES)
    where = subprocess.run(
        [
            str(root / "opt/bankwatch/venv/bin/python"),
            "-c",
            "import bankwatch.daemon.cli as c; print(c.__file__)",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert where.stdout.startswith(str(root / "opt/bankwatch/venv/lib/")), where
    checked = subprocess.run(
        [str(exe), "check", "--config-only", str(etc / "bankwatch.toml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    assert "config is valid" in checked.stdout


def test_upgrade_keeps_config_credentials_and_state_and_uninstall_keeps_them_unless_purged(
    tmp_path: Path, wheel: Path, spy: Path
) -> None:
    root = tmp_path / "root"
    assert install(root, wheel, spy).returncode == 0
    config = root / "etc/bankwatch/bankwatch.toml"
    mine = config.read_text().replace('name = "home"', 'name = "mine"')
    config.write_text(mine)
    secret = root / "etc/bankwatch/credentials/mqtt-password"
    secret.write_text("s3cret\n")
    state = root / "var/lib/private/bankwatch"  # where DynamicUser= keeps StateDirectory=
    state.mkdir(parents=True)
    (state / "spool.bin").write_bytes(b"points")
    (root / "var/lib/bankwatch").symlink_to("private/bankwatch")
    # An upgrade replaces the program: a file changed in the venv comes back as shipped.
    installed = next((root / "opt/bankwatch/venv/lib").glob("python3*/site-packages"))
    module = installed / "bankwatch/daemon/sdnotify.py"
    shipped = module.read_text()
    module.write_text(shipped + "\n# changed\n")

    done = install(root, wheel, spy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"kept your config {config}" in done.stdout and "upgraded" in done.stdout
    assert config.read_text() == mine
    assert secret.read_text() == "s3cret\n"
    assert (root / "var/lib/bankwatch/spool.bin").read_bytes() == b"points"
    assert module.read_text() == shipped

    done = install(root, wheel, spy, "--uninstall")
    assert done.returncode == 0, done.stderr
    assert not (root / "opt/bankwatch").exists()
    assert not (root / "etc/systemd/system/bankwatch.service").exists()
    assert not (root / "usr/local/bin/bankwatch").is_symlink()
    assert config.read_text() == mine and secret.read_text() == "s3cret\n"
    assert (state / "spool.bin").read_bytes() == b"points"

    done = install(root, wheel, spy, "--uninstall", "--purge")
    assert done.returncode == 0, done.stderr
    assert not (root / "etc/bankwatch").exists()
    assert not (root / "var/lib/bankwatch").is_symlink()
    assert not state.exists()
    assert not spy.exists(), f"systemctl was called with --root: {spy.read_text()}"


def test_purge_without_uninstall_is_refused(tmp_path: Path, wheel: Path, spy: Path) -> None:
    done = install(tmp_path / "root", wheel, spy, "--purge")
    assert done.returncode == 2
    assert "--purge goes with --uninstall" in done.stderr
    assert not (tmp_path / "root").exists()


# --- systemd-analyze on the installed unit -------------------------------------------------------

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


@needs_analyze
def test_installed_unit_passes_systemd_analyze_verify(
    fresh: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """verify needs the unit's commands and the units it refers to: the scratch root has the
    first from the install and gets the second from this machine's systemd."""
    root = fresh[0]
    system_units = Path("/usr/lib/systemd/system")
    if not system_units.is_dir():
        pytest.skip("no /usr/lib/systemd/system to take the standard units from")
    if not (root / "usr/lib/systemd/system").exists():
        shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)

    def verify(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["systemd-analyze", "verify", f"--root={root}", name],
            capture_output=True,
            text=True,
            timeout=120,
        )

    out = verify("bankwatch.service")
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out.stdout + out.stderr
    # The same check does catch a mistake (in a copy: the installed unit stays as shipped).
    unit = root / "etc/systemd/system/bankwatch.service"
    broken = unit.with_name("bankwatch-broken.service")
    broken.write_text(unit.read_text().replace("UMask=0077", "UMask=0077\nProtectSystemm=strict"))
    try:
        out = verify(broken.name)
    finally:
        broken.unlink()
    assert "Unknown key 'ProtectSystemm'" in out.stdout + out.stderr


@needs_analyze
def test_unit_security_exposure_is_at_most_1_5() -> None:
    out = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=yes",
            "--no-pager",
            str(REPO / "systemd/bankwatch.service"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    m = re.search(r"Overall exposure level for bankwatch\.service: (\d+\.\d)", out.stdout)
    assert m, out.stdout + out.stderr
    assert float(m.group(1)) <= 1.5, out.stdout
