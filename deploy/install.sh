#!/usr/bin/env bash
# Installs rollback-watchdog on this host, or into a staging root (--root).
#
#   sudo deploy/install.sh                    # install from this checkout
#   deploy/install.sh --root /tmp/stage --no-venv
#
# Safe to run again (an upgrade from a newer checkout): it never overwrites the
# operator's config.yaml or env file, and a second run changes nothing.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: install.sh [--root DIR] [--user NAME] [--python PYTHON] [--source DIR] [--no-venv]

  --root DIR       install below DIR instead of / (staging, packaging, tests)
  --user NAME      system user the daemon runs as (default: rollback-watchdog)
  --python PYTHON  interpreter for the venv, Python >= 3.11 (default: python3)
  --source DIR     the project checkout to install (default: this script's checkout)
  --no-venv        skip creating the venv and installing the package into it

Creates (below --root):
  /opt/rollback-watchdog/venv                         the package and its dependencies
  /etc/rollback-watchdog/config.yaml                  the example config, only if absent
  /etc/rollback-watchdog/env                          secrets for the unit (0600), only if absent
  /var/lib/rollback-watchdog                          the daemon's state (0700, as the unit's StateDirectoryMode)
  /etc/systemd/system/rollback-watchdog.service       from systemd/ in the checkout
EOF
}

ROOT=/
SVC_USER=rollback-watchdog
PYTHON=python3
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WITH_VENV=1

die() { echo "install.sh: $*" >&2; exit 2; }
need() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) need "$@"; ROOT=$2; shift 2 ;;
        --root=*) ROOT=${1#*=}; shift ;;
        --user) need "$@"; SVC_USER=$2; shift 2 ;;
        --user=*) SVC_USER=${1#*=}; shift ;;
        --python) need "$@"; PYTHON=$2; shift 2 ;;
        --python=*) PYTHON=${1#*=}; shift ;;
        --source) need "$@"; SOURCE=$2; shift 2 ;;
        --source=*) SOURCE=${1#*=}; shift ;;
        --no-venv) WITH_VENV=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

[[ $SVC_USER =~ ^[a-z_][a-z0-9_-]*$ ]] || die "--user: not a valid user name: $SVC_USER"
[ -d "$SOURCE" ] || die "--source: no such directory: $SOURCE"
SOURCE="$(cd "$SOURCE" && pwd)"
[ -f "$SOURCE/pyproject.toml" ] && [ -f "$SOURCE/config.yaml" ] \
    || die "--source: $SOURCE is not a rollback-watchdog checkout (no pyproject.toml and config.yaml)"

mkdir -p "$ROOT"
ROOT="$(cd "$ROOT" && pwd)"
R=${ROOT%/}   # prefix for every path: empty when installing into /

LIVE=0        # installing into this host's / as root: users, owners and systemd are real
if [ -z "$R" ] && [ "$(id -u)" -eq 0 ]; then LIVE=1; fi

build="" tmp=""
cleanup() { rm -rf "$build" "$tmp"; }
trap cleanup EXIT

say() { printf '  %-10s %s\n' "$1" "$2"; }

# The service user may own things only when it exists on this host.
user_exists() { [ "$LIVE" -eq 1 ] && id -u "$SVC_USER" >/dev/null 2>&1; }

owner() {  # owner PATH USER:GROUP -- only on a live install as root
    if user_exists; then chown "$2" "$1"; fi
}

ensure_dir() {  # ensure_dir PATH MODE [USER:GROUP]
    if [ -d "$1" ]; then say exists "$1"; else mkdir -p "$1"; say created "$1"; fi
    chmod "$2" "$1"
    if [ $# -ge 3 ]; then owner "$1" "$3"; fi
}

echo "rollback-watchdog install: source $SOURCE, root $ROOT, user $SVC_USER"

# --- the system user ---------------------------------------------------------------
if [ "$LIVE" -eq 0 ]; then
    if [ -n "$R" ]; then
        say skipped "system user $SVC_USER (--root is not /: create it on the target host)"
    else
        say skipped "system user $SVC_USER (not running as root)"
    fi
elif id -u "$SVC_USER" >/dev/null 2>&1; then
    say exists "system user $SVC_USER"
else
    nologin=/usr/sbin/nologin
    [ -x "$nologin" ] || nologin=/bin/false
    if useradd --system --user-group --no-create-home --home-dir /var/lib/rollback-watchdog \
            --shell "$nologin" --comment "rollback-watchdog daemon" "$SVC_USER"; then
        say created "system user $SVC_USER"
    else
        say WARNING "could not create system user $SVC_USER; create it, then run this again"
    fi
fi

# --- directories -------------------------------------------------------------------
ensure_dir "$R/opt/rollback-watchdog" 0755 root:root
ensure_dir "$R/etc/rollback-watchdog" 0750 "root:$SVC_USER"
ensure_dir "$R/var/lib/rollback-watchdog" 0700 "$SVC_USER:$SVC_USER"

# --- the venv ----------------------------------------------------------------------
VENV="$R/opt/rollback-watchdog/venv"
if [ "$WITH_VENV" -eq 0 ]; then
    say skipped "venv $VENV (--no-venv)"
else
    command -v "$PYTHON" >/dev/null 2>&1 || die "--python: $PYTHON not found"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "--python: $PYTHON is older than Python 3.11"
    if [ -x "$VENV/bin/python" ]; then
        say exists "venv $VENV"
    else
        "$PYTHON" -m venv "$VENV"
        say created "venv $VENV"
    fi
    # Installs the checkout (an upgrade when it is newer; the same files when it is not),
    # built from a copy so that the checkout gets no build/ or *.egg-info. The daemon alone: no extra,
    # so none of the demo's local AWS (moto, Flask, Werkzeug) lands on an ops host.
    build="$(mktemp -d)"
    tar -C "$SOURCE" --exclude=./.git --exclude=./.venv --exclude=./build --exclude='*.egg-info' \
        --exclude=./state --exclude=__pycache__ -cf - . | tar -C "$build" -xf -
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$build"
    version="$("$VENV/bin/rollback-watchdog" --version 2>/dev/null || true)"
    say installed "$VENV/bin/rollback-watchdog ${version}"
fi

# --- the systemd unit --------------------------------------------------------------
UNIT_SRC="$SOURCE/systemd/rollback-watchdog.service"
UNIT_DIR="$R/etc/systemd/system"
UNIT="$UNIT_DIR/rollback-watchdog.service"
if [ ! -f "$UNIT_SRC" ]; then
    say skipped "systemd unit (no systemd/rollback-watchdog.service in $SOURCE)"
else
    mkdir -p "$UNIT_DIR"
    tmp="$(mktemp)"
    # The unit belongs to the package: it follows the checkout (customise with a drop-in,
    # systemctl edit rollback-watchdog). Only User=/Group= follow --user.
    sed -e "s/^User=.*/User=$SVC_USER/" -e "s/^Group=.*/Group=$SVC_USER/" "$UNIT_SRC" >"$tmp"
    if [ -f "$UNIT" ] && cmp -s "$tmp" "$UNIT"; then
        say unchanged "$UNIT"
        chmod 0644 "$UNIT"
    else
        if [ -f "$UNIT" ]; then what=updated; else what=installed; fi
        install -m 0644 "$tmp" "$UNIT"
        say "$what" "$UNIT"
        if [ "$LIVE" -eq 1 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
            if systemctl daemon-reload; then
                say reloaded "systemd (daemon-reload)"
            else
                say WARNING "systemctl daemon-reload failed; run it by hand"
            fi
        fi
    fi
fi

# --- the configuration: the operator's once it exists ------------------------------
CONFIG="$R/etc/rollback-watchdog/config.yaml"
if [ -e "$CONFIG" ]; then
    say kept "$CONFIG (exists; never overwritten)"
else
    # The unit's only writable path is its StateDirectory: the example's relative state_path would fail there.
    sed 's#^\(  state_path:\) .*#\1 /var/lib/rollback-watchdog/watchdog.db#' "$SOURCE/config.yaml" > "$CONFIG.tmp"
    install -m 0640 "$CONFIG.tmp" "$CONFIG"
    rm -f "$CONFIG.tmp"
    owner "$CONFIG" "root:$SVC_USER"
    say installed "$CONFIG (the example, state in /var/lib/rollback-watchdog: edit it)"
fi

# --- secrets for the unit's EnvironmentFile ----------------------------------------
ENVFILE="$R/etc/rollback-watchdog/env"
if [ -e "$ENVFILE" ]; then
    say kept "$ENVFILE (exists; never overwritten)"
else
    # Every ${NAME} the installed config uses, outside comments, becomes a placeholder.
    names="$(sed -e 's/^[[:space:]]*#.*//' -e 's/[[:space:]]#.*//' "$CONFIG" \
             | grep -o '\${[A-Za-z_][A-Za-z0-9_]*}' | tr -d '${}' | sort -u || true)"
    (
        umask 077
        {
            echo "# Environment of rollback-watchdog.service (EnvironmentFile=). Mode 0600: it holds secrets."
            echo "# config.yaml reads these as \${NAME}; an unset one is a config error that names it."
            echo "# Uncomment and fill in each one your config uses, then:"
            echo "#   rollback-watchdog check-config -c /etc/rollback-watchdog/config.yaml"
            echo "#"
            for name in $names; do echo "#${name}="; done
            echo "#"
            echo "# AWS credentials: prefer an instance role; otherwise"
            echo "#AWS_ACCESS_KEY_ID="
            echo "#AWS_SECRET_ACCESS_KEY="
            echo "#"
            echo "# Any watchdog: key can be overridden here too, e.g."
            echo "#WATCHDOG_DRY_RUN=true"
        } >"$ENVFILE"
    )
    chmod 0600 "$ENVFILE"
    owner "$ENVFILE" root:root
    say created "$ENVFILE (0600; fill in the secrets)"
fi

echo "done. Next:"
echo "  1. edit $CONFIG and $ENVFILE"
if [ "$WITH_VENV" -eq 1 ]; then
    echo "  2. $VENV/bin/rollback-watchdog check-config -c /etc/rollback-watchdog/config.yaml"
else
    echo "  2. rollback-watchdog check-config -c /etc/rollback-watchdog/config.yaml"
fi
echo "  3. systemctl enable --now rollback-watchdog"
