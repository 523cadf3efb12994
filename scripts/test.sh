#!/usr/bin/env bash
# Runs every check and test of Tally: formatting, lints, unit, property, integration and crash
# tests, then the end-to-end run with curl, a Python gRPC client and a million-add load.
# It installs what it needs (rustfmt, clippy, redis-cli, redis-server, a Python venv with
# grpcio and redis-py) and fails, saying why, when something cannot be installed or started.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components"
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
    rustup component add "$component"
  fi
done

step "redis-cli and redis-server for the Redis protocol tests"
# The tests drive Tally with redis-cli and compare some replies with a redis-server that they
# start themselves on a free loopback port.
missing_packages=()
command -v redis-cli >/dev/null 2>&1 || missing_packages+=(redis-tools)
command -v redis-server >/dev/null 2>&1 || missing_packages+=(redis-server)
if ((${#missing_packages[@]})); then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_packages[@]}"
  fi
  for tool in redis-cli redis-server; do
    command -v "$tool" >/dev/null 2>&1 || {
      echo "$tool is missing and could not be installed (apt-get install ${missing_packages[*]})" >&2
      exit 1
    }
  done
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test (unit, property, integration and crash tests)"
cargo build --release -p tally
cargo test --workspace --release

if [[ -x scripts/e2e.sh ]]; then
  step "end-to-end: curl, Python gRPC client, one million adds"
  scripts/e2e.sh
else
  echo "scripts/e2e.sh is missing or not executable" >&2
  exit 1
fi
