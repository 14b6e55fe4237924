#!/usr/bin/env bash
# Install, upgrade or uninstall bankwatch as a systemd service (Raspberry Pi OS / Debian).
#
#   sudo systemd/install.sh                      install or upgrade from this checkout
#   sudo systemd/install.sh --from FILE.whl      ... from a wheel instead
#   sudo systemd/install.sh --uninstall          remove the program and the unit; keep config+state
#   sudo systemd/install.sh --uninstall --purge  ... and the config, credentials and state too
#
# Options:
#   --root DIR        install into DIR as if it were / (tests, image builds): no systemctl calls,
#                     no root needed; the venv's scripts then point into DIR
#   --from PATH       what to pip-install: a checkout (default: the one holding this script) or
#                     a wheel
#   --python PY       the interpreter the venv is made from (default: python3, 3.11 or newer)
#   --pip-args ARGS   extra pip arguments, word-split (e.g. "--no-deps", "--no-index
#                     --find-links DIR" for an offline install)
#
# What goes where (the README's Raspberry Pi guide describes the same):
#   /opt/bankwatch/venv/                     the program in its own Python environment (upgraded)
#   /opt/bankwatch/share/                    README, unit, example configs, can0 and udev examples
#   /usr/local/bin/bankwatch                 a link to the venv's command
#   /etc/bankwatch/bankwatch.toml            your bank (installed once, never overwritten)
#   /etc/bankwatch/credentials/              secrets for LoadCredential= (root only)
#   /etc/systemd/system/bankwatch.service    the unit (replaced on upgrade: use drop-ins)
#   /var/lib/bankwatch                       state, made by systemd (StateDirectory=)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")

ROOT=/
FROM=$REPO
PYTHON=python3
PIP_ARGS=""
MODE=install
PURGE=0

die() {
    echo "install.sh: $*" >&2
    exit 2
}

while (($#)); do
    case "$1" in
    --root) ROOT=${2:?--root needs a folder}; shift 2 ;;
    --from) FROM=${2:?--from needs a checkout or a wheel}; shift 2 ;;
    --python) PYTHON=${2:?--python needs an interpreter}; shift 2 ;;
    --pip-args) PIP_ARGS=${2?--pip-args needs arguments}; shift 2 ;;
    --uninstall) MODE=uninstall; shift ;;
    --purge) PURGE=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
    esac
done
((PURGE == 0)) || [[ $MODE == uninstall ]] || die "--purge goes with --uninstall"

[[ $ROOT == / ]] || ROOT=$(realpath -m "$ROOT")
ROOT=${ROOT%/}
OPT=$ROOT/opt/bankwatch
VENV=$OPT/venv
SHARE=$OPT/share
ETC=$ROOT/etc/bankwatch
CONFIG=$ETC/bankwatch.toml
CREDENTIALS=$ETC/credentials
UNIT=$ROOT/etc/systemd/system/bankwatch.service
LINK=$ROOT/usr/local/bin/bankwatch
STATE=$ROOT/var/lib/bankwatch
STATE_PRIVATE=$ROOT/var/lib/private/bankwatch

# systemctl only for the real system, and only when systemd runs it.
LIVE=0
if [[ -z $ROOT ]]; then
    [[ $(id -u) -eq 0 ]] || die "run it as root (sudo), or give --root DIR"
    [[ -d /run/systemd/system ]] && LIVE=1
fi
systemctl_() {
    if ((LIVE)); then
        systemctl "$@"
    fi
}

say() { printf '%s\n' "$*"; }

if [[ $MODE == uninstall ]]; then
    if ((LIVE)); then
        systemctl disable --now bankwatch.service 2>/dev/null || true
    fi
    rm -f "$UNIT"
    if [[ -L $LINK && $(readlink "$LINK") == /opt/bankwatch/venv/bin/bankwatch ]]; then
        rm -f "$LINK"
    fi
    rm -rf "$OPT"
    systemctl_ daemon-reload
    say "removed the program (/opt/bankwatch) and the unit"
    if ((PURGE)); then
        rm -rf "$ETC" "$STATE" "$STATE_PRIVATE"
        say "removed the config, the credentials and the state (--purge)"
    else
        say "kept /etc/bankwatch (config, credentials) and /var/lib/bankwatch (state);" \
            "--uninstall --purge removes them"
    fi
    exit 0
fi

# --- install or upgrade -------------------------------------------------------------------------

if [[ -f $FROM && $FROM == *.whl ]]; then
    FROM=$(cd "$(dirname "$FROM")" && pwd)/$(basename "$FROM")
elif [[ -f $FROM/pyproject.toml ]]; then
    FROM=$(cd "$FROM" && pwd)
else
    die "--from $FROM: neither a checkout (no pyproject.toml) nor a wheel"
fi
command -v "$PYTHON" >/dev/null || die "no $PYTHON: sudo apt-get install python3"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "bankwatch needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1)"
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null ||
    die "$PYTHON cannot make a venv: sudo apt-get install python3-venv python3-pip"

UPGRADE=0
[[ -x $VENV/bin/bankwatch ]] && UPGRADE=1

# The venv is kept across upgrades, unless its interpreter is gone or another Python version
# (a Debian release upgrade): then it is made anew.
want=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
have=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null ||
    true)
if [[ -d $VENV && $have != "$want" ]]; then
    say "the environment in $VENV is for Python ${have:-(broken)}: making it anew for $want"
    rm -rf "$VENV"
fi
install -d -m 0755 "$OPT"
if [[ ! -d $VENV ]]; then
    say "making the Python environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
say "installing bankwatch from $FROM"
# shellcheck disable=SC2086  # PIP_ARGS is a list of words on purpose
"$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off -q \
    --upgrade $PIP_ARGS "$FROM"

install -d -m 0755 "$ROOT/usr/local/bin"
ln -sfn /opt/bankwatch/venv/bin/bankwatch "$LINK"

# Documentation and examples: replaced on every upgrade.
rm -rf "$SHARE"
install -d -m 0755 "$SHARE" "$SHARE/systemd" "$SHARE/configs"
install -m 0644 "$REPO/README.md" "$SHARE/README.md"
install -m 0644 "$HERE/README.md" "$HERE/bankwatch.service" "$HERE/80-can0.network" \
    "$HERE/99-bankwatch-serial.rules" "$SHARE/systemd/"
install -m 0644 "$REPO"/configs/*.toml "$SHARE/configs/"

# Config and secrets: made once, never overwritten.
install -d -m 0755 "$ETC"
install -d -m 0700 "$CREDENTIALS"
if [[ -e $CONFIG ]]; then
    say "kept your config $CONFIG"
else
    {
        echo "# Installed by bankwatch's install.sh as a starting point: the 48 V home bank of the"
        echo "# README. Describe your own bank (README: Config guide), check it with"
        echo "#   bankwatch check /etc/bankwatch/bankwatch.toml"
        echo "# then: sudo systemctl restart bankwatch"
        echo
        cat "$REPO/configs/home-48v-4s2p.toml"
    } >"$CONFIG.new"
    chmod 0644 "$CONFIG.new"
    mv "$CONFIG.new" "$CONFIG"
    say "installed a starting config $CONFIG: edit it to describe your bank"
fi

# The unit: ours, replaced on upgrade. Local changes belong in drop-ins (systemctl edit).
install -d -m 0755 "$(dirname "$UNIT")"
install -m 0644 "$HERE/bankwatch.service" "$UNIT"
systemctl_ daemon-reload

CHECK_OK=1
if ! "$VENV/bin/bankwatch" check --config-only "$CONFIG" >/dev/null; then
    CHECK_OK=0
    say "the config has the problems above: the service will not start until they are fixed"
fi

if ((UPGRADE)); then
    if ((CHECK_OK)) && ((LIVE)) && systemctl is-active --quiet bankwatch.service; then
        systemctl restart bankwatch.service
        say "upgraded and restarted bankwatch.service"
    else
        say "upgraded; config, credentials and state kept"
    fi
else
    say "installed. Next: edit $CONFIG, then"
    say "  sudo systemctl enable --now bankwatch"
    say "  systemctl status bankwatch; journalctl -u bankwatch -f"
fi
((CHECK_OK)) || exit 1
