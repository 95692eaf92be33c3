#!/usr/bin/env bash
# Installs what `make run` and `make test` need, and nothing that is already
# there: safe to run before every build, silent when there is nothing to do.
#
#   PostgreSQL server binaries  always (the local cluster of local/src/lib.rs
#                               and the test harness start their own servers)
#   libclang-dev, protoc        always (the pg_query crate, PostgreSQL's own
#                               parser for `slipway lint`, runs bindgen and
#                               protoc at build time)
#   Python venv in .venv        always; SLIPWAY_SETUP_VENV=0 skips it (AWS
#                               emulator and Lambda tooling for the tests,
#                               from scripts/requirements.txt)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'setup: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# Root in CI and containers; sudo on a developer machine.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root for: $*; run as root or install sudo"
  fi
}

# The same search order as find_bin_dir() in local/src/lib.rs, so this script
# and slipway agree on whether PostgreSQL is installed.
have_initdb() {
  command -v initdb >/dev/null 2>&1 && return 0
  if command -v pg_config >/dev/null 2>&1; then
    local bindir
    bindir="$(pg_config --bindir 2>/dev/null || true)"
    [ -n "$bindir" ] && [ -x "$bindir/initdb" ] && return 0
  fi
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && return 0
  done
  return 1
}

ensure_postgres() {
  have_initdb && return 0
  command -v apt-get >/dev/null 2>&1 ||
    die "postgresql server not found and there is no apt-get; install it (macOS: brew install postgresql) and re-run"
  log "installing postgresql (apt-get install postgresql)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  have_initdb || die "postgresql is installed but initdb is still not found"
}

# Where bindgen (clang-sys) looks for libclang: LIBCLANG_PATH, then the LLVM
# and multiarch library directories. The runtime library alone (libclang1)
# is not enough: bindgen also needs clang's own headers (stddef.h), which
# come with libclang-dev through libclang-common-*-dev.
have_libclang() {
  local lib
  for lib in ${LIBCLANG_PATH:+"$LIBCLANG_PATH"/libclang*.so*} \
    /usr/lib/llvm-*/lib/libclang.so /usr/lib/*/libclang.so /usr/lib64/libclang.so \
    /usr/local/lib/libclang.so /usr/local/opt/llvm/lib/libclang.dylib \
    /opt/homebrew/opt/llvm/lib/libclang.dylib \
    /Library/Developer/CommandLineTools/usr/lib/libclang.dylib; do
    [ -e "$lib" ] || continue
    case "$lib" in
      /usr/lib/llvm-*)
        # Debian: the headers sit beside it, under lib/clang/<version>/include.
        compgen -G "${lib%/lib/libclang.so}/lib/clang/*/include/stddef.h" >/dev/null && return 0
        ;;
      *) return 0 ;;
    esac
  done
  return 1
}

# pg_query's build script runs bindgen (libclang) over libpg_query's header
# and prost-build, which calls protoc on libpg_query's .proto. Without protoc
# in PATH, prost-build 0.10 compiles protobuf from source with cmake instead:
# minutes of C++ on a CI machine, and cmake is rarely there either.
ensure_pg_query_build_deps() {
  local missing=()
  have_libclang || missing+=(libclang-dev)
  command -v protoc >/dev/null 2>&1 || [ -n "${PROTOC:-}" ] || missing+=(protobuf-compiler)
  [ "${#missing[@]}" -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 ||
    die "the pg_query crate needs libclang and protoc to build, and there is no apt-get; install LLVM/clang and protobuf (macOS: brew install llvm protobuf) or set LIBCLANG_PATH and PROTOC, and re-run"
  log "installing ${missing[*]} (apt-get install), needed to build the pg_query crate"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  have_libclang || die "libclang-dev is installed but libclang.so is still not found; set LIBCLANG_PATH"
  command -v protoc >/dev/null 2>&1 || [ -n "${PROTOC:-}" ] ||
    die "protobuf-compiler is installed but protoc is still not in PATH"
}

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum | cut -d' ' -f1
  else
    shasum -a 256 | cut -d' ' -f1
  fi
}

# --- Python venv ------------------------------------------------------------
# The project's Python tools live in .venv, pinned in scripts/requirements.txt:
# moto[server] (AWS emulator), cargo-lambda, awscli; the Lambda's tests
# (lambda/tests/) need them, so `make test` cannot run without the venv.
# A stamp file holds the hash of the requirements last installed, so an
# unchanged list costs one hash, not a pip run.
ensure_venv() {
  local venv=.venv requirements=scripts/requirements.txt
  local stamp="$venv/.slipway-requirements.sha256" want
  if [ -f "$requirements" ]; then
    want="$(sha256 <"$requirements")"
  else
    want="no-requirements"
  fi
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
    return 0
  fi
  if [ ! -x "$venv/bin/python" ]; then
    # Debian splits venv's pip bootstrap (ensurepip) into python3-venv.
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
      command -v apt-get >/dev/null 2>&1 ||
        die "python3 with venv support not found; install python3 and python3-venv"
      log "installing python3-venv (apt-get install)"
      as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
      as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
    fi
    log "creating the Python venv in $venv"
    python3 -m venv "$venv" ||
      die "python3 -m venv failed; on Debian/Ubuntu install python3-venv"
  fi
  if [ -f "$requirements" ]; then
    log "installing into $venv from $requirements:" \
      "$(grep -v -E '^[[:space:]]*(#|$)' "$requirements" | tr '\n' ' ')"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      -r "$requirements"
  fi
  printf '%s\n' "$want" >"$stamp"
}

ensure_postgres
ensure_pg_query_build_deps
if [ "${SLIPWAY_SETUP_VENV:-1}" = 1 ]; then
  ensure_venv
fi
