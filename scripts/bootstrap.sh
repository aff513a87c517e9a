# shellcheck shell=bash
# Shared setup for the project's commands (tests/run, scripts/demo). Source it; it defines
# functions only. Works on a fresh Debian machine: creates .venv, installs this package with the
# extras asked for, and installs system packages (redis-server, chromium) with apt-get as root.
# Expects ROOT (the repository root) and VENV (its .venv) to be set by the caller.

say() { printf '\n==> %s\n' "$*"; }
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# System packages (Debian / apt-get)
# ---------------------------------------------------------------------------
APT_UPDATED=0

# apt_install PKG... : install Debian packages, or fail telling the user what to install.
apt_install() {
    if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        die "missing system package(s): $*
       install them first, e.g.:  sudo apt-get install -y --no-install-recommends $*"
    fi
    export DEBIAN_FRONTEND=noninteractive
    local log
    log="$(mktemp)"
    if [[ "$APT_UPDATED" -eq 0 ]]; then
        if ! apt-get update >"$log" 2>&1; then
            cat "$log" >&2; rm -f "$log"; die "apt-get update failed"
        fi
        APT_UPDATED=1
    fi
    echo "    apt-get install $*"
    if ! apt-get install -y --no-install-recommends "$@" >"$log" 2>&1; then
        cat "$log" >&2; rm -f "$log"; die "apt-get install $* failed"
    fi
    rm -f "$log"
}

ensure_redis_server() {
    say "redis-server"
    if ! command -v redis-server >/dev/null 2>&1; then
        apt_install redis-server
        # The Debian package may auto-start its own service on 127.0.0.1:6379 (only
        # where an init system runs). It does not matter: the suite never touches
        # port 6379; every test starts its own redis-server on a free port via
        # harness/processes.py. We deliberately leave that service alone.
        command -v redis-server >/dev/null 2>&1 || die "redis-server still not on PATH after install"
    fi
    redis-server --version
}

# Browser tests (hook): installs Debian's chromium when browser tests are present
# (tests/browser/) or explicitly requested with SR_NEED_CHROMIUM=1.
ensure_chromium() {
    say "chromium"
    if ! command -v chromium >/dev/null 2>&1; then
        apt_install chromium
        command -v chromium >/dev/null 2>&1 || die "chromium still not on PATH after install"
    fi
    chromium --version 2>/dev/null || true
}

# ---------------------------------------------------------------------------
# JavaScript development dependencies (npm)
# ---------------------------------------------------------------------------
# static/package.json's devDependencies (axe-core for the browser suite's accessibility test,
# typescript for its "types" script) go into static/node_modules with `npm ci`, pinned by the
# committed static/package-lock.json. The module itself has no dependencies; node_modules is
# git-ignored, so neither the wheel nor the sdist picks it up. Skipped while node_modules was
# installed from the same package.json and lock (a stamp file inside it records their hashes).
ensure_js_dev_dependencies() {
    local dir="$ROOT/static"
    [[ -f "$dir/package.json" ]] || return 0
    say "npm devDependencies (static/)"
    [[ -f "$dir/package-lock.json" ]] || die "static/package-lock.json is missing: run
       (cd static && npm install --no-audit --no-fund) and commit the lock file"
    if ! command -v npm >/dev/null 2>&1; then
        apt_install npm
        command -v npm >/dev/null 2>&1 || die "npm still not on PATH after install"
    fi
    local hash stamp log
    hash="$(cat "$dir/package.json" "$dir/package-lock.json" | sha256sum | cut -d' ' -f1)"
    stamp="$dir/node_modules/.installed-$hash"
    if [[ -e "$stamp" ]]; then
        echo "    up to date ($(basename "$stamp"))"
        return 0
    fi
    log="$(mktemp)"
    if ! (cd "$dir" && npm ci --no-audit --no-fund) >"$log" 2>&1; then
        cat "$log" >&2; rm -f "$log"
        die "npm ci in static/ failed (if package.json changed, update the lock:
       cd static && npm install --no-audit --no-fund, and commit package-lock.json)"
    fi
    rm -f "$log"
    touch "$stamp"
    echo "    installed (npm ci: static/node_modules)"
}

# ---------------------------------------------------------------------------
# Python virtualenv
# ---------------------------------------------------------------------------
py_ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1; }

find_python() {
    local candidate
    for candidate in python3 python3.13 python3.12 python3.11; do
        if command -v "$candidate" >/dev/null 2>&1 && py_ok "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

ensure_venv() {
    if [[ -x "$VENV/bin/python" ]] && py_ok "$VENV/bin/python" \
        && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        return 0
    fi
    if [[ -e "$VENV" ]]; then
        die "$VENV exists but is not a usable Python >= 3.11 virtualenv with pip.
       Remove it (rm -rf .venv) and run tests/run again."
    fi

    local python
    if ! python="$(find_python)"; then
        apt_install python3 python3-venv
        python="$(find_python)" || die "need Python >= 3.11 (python3); Debian 12+ ships 3.11"
    fi
    echo "    creating .venv with $python ($("$python" -V 2>&1))"
    if ! "$python" -m venv "$VENV" >/dev/null 2>&1; then
        # Debian splits ensurepip/venv into python3-venv (and python3.X-venv).
        rm -rf "$VENV"
        local ver
        ver="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        apt_install python3-venv "python${ver}-venv"
        "$python" -m venv "$VENV" || die "could not create $VENV"
    fi
}

# install_python_packages EXTRAS : install -e ".[EXTRAS]" once per pyproject.toml version, with uv.
# uv (installed into the venv by its pip) resolves to the same releases as pip, and fills a fresh
# venv with the test extras in seconds where pip took 90 s of a slow 2-core machine's CPU, which a
# fresh clone (and so CI) pays on every run. It reads UV_INDEX_URL, not pip's configuration.
install_python_packages() {
    local extras="${1:-test}"
    say "installing Python packages"
    ensure_venv
    local hash stamp log
    hash="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    stamp="$VENV/.installed-$extras-$hash"
    if [[ -e "$stamp" ]]; then
        echo "    up to date ($(basename "$stamp"))"
        return 0
    fi
    log="$(mktemp)"
    if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check "uv>=0.5,<1" >"$log" 2>&1; then
        cat "$log" >&2; rm -f "$log"
        die "pip install uv failed (uv installs the project's packages)"
    fi
    if ! "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" -e ".[$extras]" >"$log" 2>&1; then
        cat "$log" >&2; rm -f "$log"
        die "uv pip install -e '.[$extras]' failed"
    fi
    rm -f "$log"
    rm -f "$VENV"/.installed-"$extras"-*
    touch "$stamp"
    echo "    installed (.[$extras])"
}

