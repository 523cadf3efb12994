#!/usr/bin/env bash
# End-to-end test of the release binary with clients that are not part of Tally.
# curl drives the HTTP/JSON API, and a Python client that grpcio-tools generates from
# proto/tally/v1/tally.proto drives the gRPC API and a load of 1,000,000 adds. redis-py
# drives the Redis protocol port, with transactions and RESP3.
# Finally the server restarts on the same data directory and the counters are read again.
#
# Usage: scripts/e2e.sh   (from any directory; needs cargo, curl and python3 with venv)
#
# The server listens only on 127.0.0.1 with ports that the system picks. Its log goes
# to target/e2e-server.log. The last line is "e2e: N passed, M failed", where N and M
# count check groups, and the exit status is 1 when any group failed.
#
# E2E_LOAD_ADDS changes the number of adds in the load step (default 1000000).
# E2E_SERVER_BIN tests that executable instead, and skips the cargo build.
set -euo pipefail

repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_dir"

target_dir=${CARGO_TARGET_DIR:-$repo_dir/target}
server_bin=${E2E_SERVER_BIN:-$target_dir/release/tally}
venv_dir=$target_dir/e2e-venv
stubs_dir=$target_dir/e2e-py
server_log=$target_dir/e2e-server.log
load_adds=${E2E_LOAD_ADDS:-1000000}

# grpcio and grpcio-tools are released together. 1.85.1 was the newest version of both
# on PyPI when this script was written.
grpc_version=1.85.1
# The Redis client for Python; 8.2.0 was its newest version on PyPI when the Redis protocol
# checks were added.
redis_py_version=8.2.0

# Seconds to wait for the "listening ..." line after starting the server.
startup_timeout_seconds=30
# Seconds to wait for the server to exit after SIGTERM.
shutdown_timeout_seconds=15

passed=0
failed=0
failed_groups=()
server_pid=
work_dir=$(mktemp -d "${TMPDIR:-/tmp}/tally-e2e.XXXXXX")
data_dir=$work_dir/data
body_file=$work_dir/body
http_address=
grpc_address=
resp_address=
# Event time of the first HTTP add, which the repeated-token check sends again.
first_add_time=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# Stops the server, so that its exit status is printed before the closing line, and
# prints the failed groups and the closing line.
print_summary() {
    stop_server
    if ((failed > 0)); then
        echo "failed groups:"
        printf '  %s\n' "${failed_groups[@]}"
        echo "server log: $server_log"
    fi
    echo "e2e: $passed passed, $failed failed"
}

# Stops the server by its PID: SIGTERM first, SIGKILL after the timeout.
stop_server() {
    local pid=$server_pid
    server_pid=
    [[ -n $pid ]] || return 0
    kill "$pid" 2>/dev/null || true
    local waited=0
    while kill -0 "$pid" 2>/dev/null && ((waited < shutdown_timeout_seconds * 10)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "server (pid $pid) did not exit ${shutdown_timeout_seconds} s after SIGTERM; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    local status=0
    wait "$pid" 2>/dev/null || status=$?
    echo "server (pid $pid) exited with status $status"
}

cleanup() {
    local status=$?
    stop_server
    rm -rf "$work_dir"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Ends the run after a step that the later groups depend on has failed.
fatal() {
    echo "e2e: $*" >&2
    failed=$((failed + 1))
    failed_groups+=("setup: $*")
    print_summary
    exit 1
}

# Runs one check group in a subshell with errexit on, so the first failing command
# fails the group without stopping the run.
run_group() {
    local name=$1
    shift
    echo "--- $name"
    local status=0
    set +e
    (
        set -e
        "$@"
    )
    status=$?
    set -e
    if ((status == 0)); then
        passed=$((passed + 1))
        echo "PASS $name"
    else
        failed=$((failed + 1))
        failed_groups+=("$name")
        echo "FAIL $name"
    fi
}

# Runs a Python check script and adds the counts from its closing line
# "LABEL: N passed, M failed". A script that ends without that line counts as one
# failed group.
run_python_groups() {
    local name=$1
    shift
    echo "--- $name"
    local output_file=$work_dir/python-output
    set +e
    PYTHONDONTWRITEBYTECODE=1 "$venv_dir/bin/python" "$@" 2>&1 | tee "$output_file"
    local status=${PIPESTATUS[0]}
    set -e
    local last_line
    last_line=$(tail -n 1 "$output_file")
    if [[ $last_line =~ ^[a-z]+:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        passed=$((passed + BASH_REMATCH[1]))
        failed=$((failed + BASH_REMATCH[2]))
        if ((BASH_REMATCH[2] > 0)); then
            failed_groups+=("$name: see the FAIL lines above")
        fi
        if ((BASH_REMATCH[2] == 0 && status != 0)); then
            failed=$((failed + 1))
            failed_groups+=("$name: exited with status $status")
        fi
    else
        failed=$((failed + 1))
        failed_groups+=("$name: exited with status $status before its closing line")
    fi
}

fail() {
    echo "  $*" >&2
    exit 1
}

# Sends one HTTP request with curl. Sets $status to the HTTP status code and writes the
# body to $body_file. The optional third argument is a JSON request body.
request() {
    local method=$1 path=$2 data=${3-}
    local args=(-sS --noproxy '*' --max-time 10 -o "$body_file" -w '%{http_code}' -X "$method")
    if [[ -n $data ]]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$data")
    fi
    last_request="$method $path"
    if [[ -n $data ]]; then
        # Long bodies are cut so that failure messages stay readable.
        last_request+=" ${data:0:200}"
        ((${#data} <= 200)) || last_request+="..."
    fi
    status=$(curl "${args[@]}" "http://$http_address$path")
}

expect_status() {
    local expected=$1
    if [[ $status != "$expected" ]]; then
        fail "$last_request: expected status $expected, got $status with body: $(head -c 500 "$body_file")"
    fi
}

# Evaluates a Python expression with the response body parsed as `d`, and prints the
# result (strings as they are, other values as JSON).
json_value() {
    python3 - "$body_file" "$1" <<'PY'
import json
import sys

with open(sys.argv[1], "rb") as body:
    d = json.load(body)
result = eval(sys.argv[2], {"d": d})
print(result if isinstance(result, str) else json.dumps(result))
PY
}

# Fails unless the Python expression over the parsed response body `d` is true.
expect_json() {
    local expression=$1
    local result
    result=$(json_value "$expression" 2>&1) || result="error: $result"
    if [[ $result != true ]]; then
        fail "$last_request: expected $expression, got ${result##*$'\n'} for body: $(head -c 500 "$body_file")"
    fi
}

# Checks an error response: the status and {"error": {"code": str, "message": str}},
# with the message containing the optional third argument.
expect_error() {
    local expected_status=$1 message_part=${2-}
    expect_status "$expected_status"
    expect_json 'isinstance(d["error"]["code"], str) and d["error"]["code"] != ""'
    expect_json 'isinstance(d["error"]["message"], str) and d["error"]["message"] != ""'
    if [[ -n $message_part ]]; then
        expect_json "'$message_part' in d['error']['message']"
    fi
    echo "  $last_request -> $status $(head -c 300 "$body_file")"
}

# Sends one add (POST .../add) with a token and checks the response shape.
add_counter() {
    local counter=$1 delta=$2 token=$3
    request POST "/v1/namespaces/e2e/counters/$counter/add" \
        "{\"delta\": $delta, \"idempotency_token\": {\"token\": \"$token\"}}"
    expect_status 200
    expect_json 'isinstance(d["event_id"], int) and d["event_id"] > 0'
}

expect_counter_value() {
    local counter=$1 expected=$2
    request GET "/v1/namespaces/e2e/counters/$counter"
    expect_status 200
    expect_json "d['value'] == $expected"
}

build_server() {
    if [[ -n ${E2E_SERVER_BIN:-} ]]; then
        echo "--- build: skipped, testing E2E_SERVER_BIN=$server_bin"
        [[ -x $server_bin ]] || fatal "E2E_SERVER_BIN=$server_bin is not an executable file"
        return 0
    fi
    echo "--- build: cargo build --release -p tally"
    if ! cargo build --release -p tally; then
        fatal "cargo build --release -p tally failed"
    fi
    [[ -x $server_bin ]] || fatal "the build did not produce $server_bin"
}

# Creates the virtual environment with the pinned grpcio, grpcio-tools and redis-py unless
# it already has them, then generates the Python stubs from the proto file.
prepare_python() {
    echo "--- python: grpcio $grpc_version and redis-py $redis_py_version in $venv_dir"
    if ! "$venv_dir/bin/python" -c 'pass' 2>/dev/null; then
        rm -rf "$venv_dir"
        python3 -m venv "$venv_dir" || fatal "python3 -m venv $venv_dir failed"
    fi
    if ! "$venv_dir/bin/python" - "$grpc_version" "$redis_py_version" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version

try:
    installed = (version("grpcio"), version("grpcio-tools"), version("redis"))
except PackageNotFoundError:
    sys.exit(1)
sys.exit(0 if installed == (sys.argv[1], sys.argv[1], sys.argv[2]) else 1)
PY
    then
        "$venv_dir/bin/python" -m pip install --disable-pip-version-check --quiet \
            "grpcio==$grpc_version" "grpcio-tools==$grpc_version" "redis==$redis_py_version" ||
            fatal "pip install of grpcio and grpcio-tools $grpc_version and redis $redis_py_version failed"
    fi

    rm -rf "$stubs_dir"
    mkdir -p "$stubs_dir"
    "$venv_dir/bin/python" -m grpc_tools.protoc -I proto \
        --python_out="$stubs_dir" --grpc_python_out="$stubs_dir" proto/tally/v1/tally.proto ||
        fatal "grpc_tools.protoc failed on proto/tally/v1/tally.proto"
}

# Starts the server on the data directory and reads both addresses from the first
# line of its standard output.
start_server() {
    local stdout_file=$work_dir/server-stdout
    : >"$stdout_file"
    "$server_bin" serve --data-dir "$data_dir" \
        --http-listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0 --resp-listen 127.0.0.1:0 >"$stdout_file" 2>>"$server_log" &
    server_pid=$!

    local line='' waited=0
    while ((waited < startup_timeout_seconds * 10)); do
        line=$(grep -m 1 '^listening ' "$stdout_file" || true)
        [[ -z $line ]] || break
        if ! kill -0 "$server_pid" 2>/dev/null; then
            tail -n 20 "$server_log" >&2
            server_pid=
            fatal "the server exited during startup; its log is above"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    if [[ -z $line ]]; then
        tail -n 20 "$server_log" >&2
        fatal "the server printed no 'listening http=... grpc=...' line within ${startup_timeout_seconds} s"
    fi
    # Traffic goes only to the loopback address that this script asked for.
    if [[ ! $line =~ ^listening\ http=(127\.0\.0\.1:[0-9]+)\ grpc=(127\.0\.0\.1:[0-9]+)\ resp=(127\.0\.0\.1:[0-9]+)$ ]]; then
        fatal "unexpected startup line (expected 'listening http=127.0.0.1:PORT grpc=127.0.0.1:PORT resp=127.0.0.1:PORT'): $line"
    fi
    http_address=${BASH_REMATCH[1]}
    grpc_address=${BASH_REMATCH[2]}
    resp_address=${BASH_REMATCH[3]}
    echo "server (pid $server_pid) listening: http=$http_address grpc=$grpc_address resp=$resp_address"
}

check_healthz() {
    request GET /healthz
    expect_status 200
}

check_put_namespace() {
    request PUT /v1/namespaces/e2e '{"counter_type": "accurate"}'
    expect_status 200
    expect_json 'd["name"] == "e2e"'
    expect_json 'd["counter_type"] == "accurate"'
    local field
    for field in accept_limit_seconds max_clock_skew_seconds event_retention_seconds idempotency_window_seconds; do
        expect_json "isinstance(d['$field'], int)"
    done

    request GET /v1/namespaces/e2e
    expect_status 200
    expect_json 'd["name"] == "e2e" and d["counter_type"] == "accurate"'
}

check_list_namespaces() {
    request GET /v1/namespaces
    expect_status 200
    expect_json '{"default", "e2e"} <= {n["name"] for n in d["namespaces"]}'
}

check_add_with_token() {
    request POST /v1/namespaces/e2e/counters/visits/add \
        "{\"delta\": 5, \"idempotency_token\": {\"token\": \"http-add-1\", \"generation_time\": \"$first_add_time\"}}"
    expect_status 200
    expect_json 'isinstance(d["event_id"], int) and d["event_id"] > 0'
    expect_json 'd["duplicate"] is False'
    expect_counter_value visits 5
}

# A retry resends the token with the same generation_time. The server treats the
# same token with another time as a different change.
check_repeated_token() {
    request POST /v1/namespaces/e2e/counters/visits/add \
        "{\"delta\": 5, \"idempotency_token\": {\"token\": \"http-add-1\", \"generation_time\": \"$first_add_time\"}}"
    expect_status 200
    expect_json 'd["duplicate"] is True'
    expect_counter_value visits 5
}

check_add_and_get() {
    request POST /v1/namespaces/e2e/counters/visits/add-and-get \
        '{"delta": 3, "idempotency_token": {"token": "http-add-2"}}'
    expect_status 200
    expect_json 'd["value"] == 8'
    expect_json 'd["duplicate"] is False'
    expect_json 'isinstance(d["event_id"], int) and d["event_id"] > 0'

    request POST /v1/namespaces/e2e/counters/visits/add-and-get \
        '{"delta": 3, "idempotency_token": {"token": "http-add-2"}}'
    expect_status 200
    expect_json 'd["value"] == 8 and d["duplicate"] is True'
}

check_get_exact() {
    add_counter visits -2 http-add-3
    expect_counter_value visits 6
}

check_clear() {
    request POST /v1/namespaces/e2e/counters/visits/clear '{"idempotency_token": {"token": "http-clear-1"}}'
    expect_status 200
    expect_json 'isinstance(d["event_id"], int) and d["event_id"] > 0'
    expect_json 'd["duplicate"] is False'
    expect_counter_value visits 0
}

check_invalid_delta() {
    request POST /v1/namespaces/e2e/counters/visits/add '{"delta": "12abc"}'
    expect_error 400 delta
    request POST /v1/namespaces/e2e/counters/visits/add '{"delta": 1.5}'
    expect_error 400 delta
    expect_counter_value visits 0
}

check_unknown_namespace() {
    request GET /v1/namespaces/nosuchnamespace
    expect_error 404
    request POST /v1/namespaces/nosuchnamespace/counters/visits/add '{"delta": 1}'
    expect_error 404
    request GET /v1/namespaces/e2e/counters/neverwritten
    expect_error 404
}

check_token_conflict() {
    add_counter conflict 1 http-conflict-1
    request POST /v1/namespaces/e2e/counters/conflict/add \
        '{"delta": 2, "idempotency_token": {"token": "http-conflict-1"}}'
    expect_error 409
    expect_counter_value conflict 1
}

# 2^53 + 1 is the smallest integer that an IEEE double cannot hold, so a server that
# passes values through a double returns ...992 instead.
check_int64_precision() {
    add_counter big 9007199254740993 http-big-1
    request GET /v1/namespaces/e2e/counters/big
    expect_status 200
    if ! grep -Eq '"value"[[:space:]]*:[[:space:]]*9007199254740993([^0-9]|$)' "$body_file"; then
        fail "$last_request: expected the raw body to contain 9007199254740993, got: $(cat "$body_file")"
    fi
}

check_add_batch() {
    local long_token
    long_token=$(printf 'x%.0s' {1..129})
    request POST /v1/namespaces/e2e/add-batch "{\"items\": [
        {\"counter\": \"batcha\", \"delta\": 4, \"idempotency_token\": {\"token\": \"http-batch-1\"}},
        {\"counter\": \"batchb\", \"delta\": 6, \"idempotency_token\": {\"token\": \"http-batch-2\"}},
        {\"counter\": \"batcha\", \"delta\": 1, \"idempotency_token\": {\"token\": \"$long_token\"}}]}"
    expect_status 200
    expect_json 'len(d["results"]) == 3'
    expect_json 'd["results"][0]["duplicate"] is False and d["results"][0]["event_id"] > 0'
    expect_json 'd["results"][1]["duplicate"] is False and d["results"][1]["event_id"] > 0'
    expect_json 'isinstance(d["results"][2]["error"]["code"], str) and "token" in d["results"][2]["error"]["message"]'
    expect_counter_value batcha 4
    expect_counter_value batchb 6
}

# The proto allows at most 1000 items per batch. The HTTP API may reject more with
# 400 (invalid) or 413 (too large), so both pass.
check_batch_too_large() {
    local items
    items=$(python3 -c 'import json; print(json.dumps({"items": [{"counter": "oversize", "delta": 1} for _ in range(1001)]}))')
    request POST /v1/namespaces/e2e/add-batch "$items"
    if [[ $status != 400 && $status != 413 ]]; then
        fail "POST /v1/namespaces/e2e/add-batch with 1001 items: expected status 400 or 413, got $status: $(head -c 300 "$body_file")"
    fi
    expect_error "$status"
    request GET /v1/namespaces/e2e/counters/oversize
    expect_error 404
}

check_list_counters() {
    request GET /v1/namespaces/e2e/counters
    expect_status 200
    expect_json '{"batcha", "batchb", "big", "conflict", "visits"} <= set(d["counters"])'
}

check_server_alive() {
    kill -0 "$server_pid" 2>/dev/null || fail "the server (pid $server_pid) is no longer running"
    request GET /healthz
    expect_status 200
}

check_restart_keeps_http_counters() {
    expect_counter_value big 9007199254740993
    expect_counter_value conflict 1
    expect_counter_value batcha 4
    expect_counter_value visits 0
}

main() {
    build_server
    prepare_python
    mkdir -p "$target_dir"
    : >"$server_log"
    mkdir -p "$data_dir"
    start_server

    run_group "HTTP GET /healthz" check_healthz
    run_group "HTTP PUT and GET namespace" check_put_namespace
    run_group "HTTP list namespaces" check_list_namespaces
    run_group "HTTP add with token" check_add_with_token
    run_group "HTTP repeated token is a duplicate" check_repeated_token
    run_group "HTTP add-and-get" check_add_and_get
    run_group "HTTP get exact value" check_get_exact
    run_group "HTTP clear" check_clear
    run_group "HTTP invalid delta is 400" check_invalid_delta
    run_group "HTTP unknown namespace or counter is 404" check_unknown_namespace
    run_group "HTTP token conflict is 409" check_token_conflict
    run_group "HTTP int64 above 2^53 is exact" check_int64_precision
    run_group "HTTP add-batch" check_add_batch
    run_group "HTTP add-batch over 1000 items" check_batch_too_large
    run_group "HTTP list counters" check_list_counters

    run_python_groups "gRPC session" scripts/e2e_grpc.py \
        --grpc-address "$grpc_address" --http-address "$http_address" --stubs-dir "$stubs_dir"

    run_python_groups "Redis protocol with redis-py" scripts/e2e_resp.py \
        --resp-address "$resp_address"

    # The restart check regenerates the same batches from the same seed and run id.
    local load_args=(--stubs-dir "$stubs_dir" --adds "$load_adds" --run-id "e2e$$")
    run_python_groups "gRPC load" scripts/e2e_load.py --grpc-address "$grpc_address" "${load_args[@]}"

    run_group "server still running after the load" check_server_alive

    echo "--- restart on the same data directory"
    stop_server
    start_server
    run_group "HTTP counters survive a restart" check_restart_keeps_http_counters
    run_python_groups "gRPC load counters survive a restart" scripts/e2e_load.py \
        --grpc-address "$grpc_address" "${load_args[@]}" --verify-only --label restart

    print_summary
    ((failed == 0))
}

main "$@"
