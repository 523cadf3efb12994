#!/usr/bin/env bash
# Runs Tally's performance comparison on this machine and rewrites the comparison results
# and goals in BENCHMARKS.md.
#
# Usage: scripts/bench.sh                                (about 12 minutes with the defaults)
#        BENCH_SECONDS=2 BENCH_ROUNDS=1 scripts/bench.sh  (smoke run, about 2 minutes)
#
# Contenders, each started here on 127.0.0.1 with a free port and its data in a temporary
# directory: Tally (default durability: fsync before the reply, with group commit),
# redis-server without persistence, with appendfsync everysec and with appendfsync always,
# and PostgreSQL with synchronous_commit=on.
#
# Comparisons, each a round-robin over its contenders, repeated BENCH_ROUNDS times:
#   1-2. redis-benchmark INCR against each Redis and Tally's RESP port, -P 1 and -P 16
#   3-4. tally bench over RESP (Tally with and without tokens, each Redis), pipeline 1 and 16
#   5.   tally bench over Tally's HTTP and gRPC: adds with tokens, then gets
#   6.   pgbench upserts into PostgreSQL
#
# Environment:
#   BENCH_SECONDS  duration of each measurement in seconds (default 10)
#   BENCH_ROUNDS   number of rounds, and each figure is the median over them (default 3)
#   TALLY_BIN      test this tally executable and skip the cargo build
#
# Missing tools (redis-server, redis-benchmark, PostgreSQL, pgbench) are installed with
# apt-get when it is available and the script runs as root. The raw figures and tool output
# go to target/bench-results/bench-TIMESTAMP/. The exit status is 1 when a measurement
# failed; the tables are written all the same, with the failure marked.
set -euo pipefail

repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_dir"
# shellcheck source-path=SCRIPTDIR source=bench/lib.sh
source "$repo_dir/scripts/bench/lib.sh"

bench_seconds=${BENCH_SECONDS:-10}
bench_rounds=${BENCH_ROUNDS:-3}
[[ $bench_seconds =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS=$bench_seconds: expected a whole number of seconds, at least 1"
[[ $bench_rounds =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS=$bench_rounds: expected a whole number, at least 1"

# Fixed by the comparison: 50 client connections over 100,000 keys.
connections=50
key_space=100000
# A measurement that runs longer than this is stopped and marked failed.
measurement_timeout_seconds=$((bench_seconds * 4 + 60))
# Seconds to wait for a server to accept connections after its start.
startup_timeout_seconds=60

results_root=${CARGO_TARGET_DIR:-$repo_dir/target}/bench-results
stamp=$(date -u +%Y%m%dT%H%M%SZ)
results_dir=$results_root/bench-$stamp
measurements=$results_dir/measurements.tsv
results_py=$repo_dir/scripts/bench/results.py
markdown=$repo_dir/BENCHMARKS.md

work_dir=
postgres_pids=()
failed_measurements=0

cleanup() {
    local status=$?
    stop_started_processes
    if [[ -n $work_dir && -d $work_dir ]]; then
        # PostgreSQL writes its log inside its own directory; keep it with the results.
        cp "$work_dir/postgres/postgres.log" "$results_dir/" 2>/dev/null || true
        rm -rf "$work_dir"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------
# Tools

# Sets postgres_bin_dir to the directory with initdb and postgres, or leaves it empty.
find_postgres() {
    postgres_bin_dir=
    local candidate
    if command -v initdb >/dev/null && command -v postgres >/dev/null; then
        postgres_bin_dir=$(dirname "$(readlink -f "$(command -v postgres)")")
        return
    fi
    for candidate in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
        if [[ -x $candidate/initdb && -x $candidate/postgres ]]; then
            postgres_bin_dir=$candidate
            return
        fi
    done
}

install_missing_tools() {
    local packages=()
    command -v redis-server >/dev/null || packages+=(redis-server)
    command -v redis-cli >/dev/null && command -v redis-benchmark >/dev/null || packages+=(redis-tools)
    find_postgres
    if [[ -z $postgres_bin_dir ]] || ! command -v pgbench >/dev/null || ! command -v psql >/dev/null; then
        packages+=(postgresql)
    fi
    command -v python3 >/dev/null || packages+=(python3)
    ((${#packages[@]} == 0)) && return

    if ! command -v apt-get >/dev/null || [[ $(id -u) != 0 ]]; then
        die "missing tools; install the packages ${packages[*]} (Debian names) and run again"
    fi
    log "installing ${packages[*]} with apt-get"
    apt-get update || die "apt-get update failed; install ${packages[*]} by hand"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}" ||
        die "apt-get install ${packages[*]} failed; install them by hand"
    # The Debian package starts a cluster of its own; this script never touches it.
    # NOTE: only the Redis packages have been installed this way so far. The PostgreSQL steps
    # have not run, because PostgreSQL was already installed wherever this script ran.
    find_postgres
    if ! command -v pgbench >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-contrib ||
            die "pgbench is still missing and apt-get install postgresql-contrib failed"
    fi
    [[ -n $postgres_bin_dir ]] || die "initdb and postgres not found after installing postgresql"
}

# Sets postgres_runner to the command prefix that runs a program as the user `postgres` when
# this script runs as root, because the PostgreSQL server does not start as root. setpriv
# execs the program, so $! after `"${postgres_runner[@]}" postgres ... &` is the server's
# own PID. (A shell function in the background would run in a subshell with a PID of its own.)
set_postgres_runner() {
    postgres_runner=()
    if [[ $(id -u) == 0 ]]; then
        getent passwd postgres >/dev/null ||
            die "PostgreSQL does not run as root and there is no user 'postgres' to run it as"
        postgres_runner=(setpriv --reuid=postgres --regid=postgres --init-groups --)
    fi
}

# ---------------------------------------------------------------------------------------
# Servers

declare -A redis_port

# Starts redis-server NAME with the persistence arguments that follow.
start_redis() {
    local name=$1
    shift
    local port dir
    port=$(free_port)
    dir=$work_dir/redis-$name
    mkdir -p "$dir"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --daemonize no \
        --logfile "$results_dir/redis-$name.log" "$@" &
    local pid=$!
    started_pids+=("$pid")
    local waited=0
    until [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]]; do
        kill -0 "$pid" 2>/dev/null || die "redis-server $name exited at start; see $results_dir/redis-$name.log"
        ((waited++ < startup_timeout_seconds * 10)) || die "redis-server $name did not reply to PING within $startup_timeout_seconds s"
        sleep 0.1
    done
    redis_port[$name]=$port
    log "redis-server $name: pid $pid, 127.0.0.1:$port ($*)"
}

start_postgres() {
    local pg_dir=$work_dir/postgres
    mkdir -p "$pg_dir"
    set_postgres_runner
    if [[ $(id -u) == 0 ]]; then
        # The server process must reach its directory through the work directory.
        chmod 755 "$work_dir"
        chown postgres: "$pg_dir"
    fi
    "${postgres_runner[@]}" "$postgres_bin_dir/initdb" -D "$pg_dir/data" -U postgres --auth=trust \
        --encoding=UTF8 --no-locale >"$results_dir/initdb.log" 2>&1 ||
        die "initdb failed; see $results_dir/initdb.log"

    postgres_port=$(free_port)
    "${postgres_runner[@]}" "$postgres_bin_dir/postgres" -D "$pg_dir/data" -p "$postgres_port" -k "$pg_dir" \
        -c listen_addresses=127.0.0.1 -c synchronous_commit=on -c fsync=on \
        -c max_connections=100 >"$pg_dir/postgres.log" 2>&1 &
    local pid=$!
    started_pids+=("$pid")
    postgres_pids+=("$pid")
    local waited=0
    until pg_isready -q -h 127.0.0.1 -p "$postgres_port" -U postgres -d postgres; do
        kill -0 "$pid" 2>/dev/null || die "postgres exited at start; see $pg_dir/postgres.log"
        ((waited++ < startup_timeout_seconds * 10)) || die "postgres did not accept connections within $startup_timeout_seconds s"
        sleep 0.1
    done
    psql -q -h 127.0.0.1 -p "$postgres_port" -U postgres -d postgres -v ON_ERROR_STOP=1 <<SQL ||
CREATE TABLE counters (name text PRIMARY KEY, value bigint);
INSERT INTO counters SELECT 'counter:' || g, 0 FROM generate_series(1, $key_space) AS g;
SQL
        die "cannot create the counters table in PostgreSQL"
    cat >"$work_dir/upsert.sql" <<SQL
\set k random(1, $key_space)
INSERT INTO counters VALUES ('counter:' || :k, 1) ON CONFLICT (name) DO UPDATE SET value = counters.value + 1;
SQL
    log "postgres: pid $pid, 127.0.0.1:$postgres_port, synchronous_commit=on"
}

# ---------------------------------------------------------------------------------------
# Measurements

# Prints the command as one line, with the temporary paths replaced by readable names.
display_command() {
    local text
    text=$(printf '%q ' "$@")
    text=${text% }
    text=${text//"$tally_bin"/target/release/tally}
    text=${text//"$work_dir/upsert.sql"/upsert.sql}
    text=${text//"$results_dir/"/}
    echo "$text"
}

# Runs one measurement and appends its row to the measurements file:
#   measure ROUND COMPARISON CONTENDER KIND OUTPUT -- COMMAND...
# KIND (tally, redis-benchmark or pgbench) selects the parser of the tool's output, which the
# command writes to OUTPUT.json, OUTPUT.out or OUTPUT.log.*. For tally, the figures are those
# of the operation named in tally_operation.
measure() {
    local round=$1 comparison=$2 contender=$3 kind=$4 output=$5
    shift 6
    local command_text status=ok parsed=
    command_text=$(display_command "$@")
    log "round $round, $comparison, $contender"
    if ! timeout "$measurement_timeout_seconds" "$@" >"$output.out" 2>"$output.err"; then
        status=failed
    fi
    if [[ $status == ok ]]; then
        case $kind in
            tally) parsed=$(python3 "$results_py" parse-tally "$output.json" "$tally_operation") || status=failed ;;
            redis-benchmark) parsed=$(python3 "$results_py" parse-redis-benchmark "$output.out") || status=failed ;;
            pgbench) parsed=$(python3 "$results_py" parse-pgbench "$output.out" "$output".log.*) || status=failed ;;
        esac
    fi
    if [[ $status != ok ]]; then
        failed_measurements=$((failed_measurements + 1))
        log "  FAILED; see $output.out and $output.err"
        parsed=$'\t\t\t\t'
    else
        log "  $(awk -F'\t' '{ printf "%.0f ops/s, p50 %s ms, p99 %s ms", $1, $2, $3 }' <<<"$parsed")"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$comparison" "$contender" "$parsed" "$status" "$command_text" >>"$measurements"
    last_ops_per_second=$(cut -f1 <<<"$parsed")
}

# Prints the address of a RESP contender.
resp_address() {
    case $1 in
        tally-*) echo "$tally_resp" ;;
        redis-*) echo "127.0.0.1:${redis_port[${1#redis-}]}" ;;
    esac
}

declare -A redis_benchmark_rate

redis_benchmark_command() {
    local contender=$1 pipeline=$2 requests=$3 address
    address=$(resp_address "$contender")
    redis_benchmark_args=(redis-benchmark -h 127.0.0.1 -p "${address##*:}" -c "$connections"
        -P "$pipeline" -n "$requests" -r "$key_space" -t incr -q --csv)
}

# Sets redis_benchmark_rate[CONTENDER/PIPELINE] from a run that lasts at least one second.
# redis-benchmark stops after a number of requests (-n), not after a time, so the first round
# requests BENCH_SECONDS times this rate. Later rounds use the rate of the round before.
calibrate_redis_benchmark() {
    local contender=$1 pipeline=$2
    local requests=$((2000 * pipeline)) started elapsed output=$results_dir/calibrate-$contender-P$pipeline
    while true; do
        redis_benchmark_command "$contender" "$pipeline" "$requests"
        started=$(now_seconds)
        timeout "$measurement_timeout_seconds" "${redis_benchmark_args[@]}" >"$output.out" 2>"$output.err" ||
            die "redis-benchmark failed against $contender; see $output.err"
        elapsed=$(seconds_between "$started" "$(now_seconds)")
        if (($(awk -v e="$elapsed" 'BEGIN { print (e >= 1) }'))) || ((requests >= 100000000)); then
            break
        fi
        requests=$((requests * 4))
    done
    redis_benchmark_rate[$contender/$pipeline]=$(python3 "$results_py" parse-redis-benchmark "$output.out" | cut -f1)
    log "calibrated redis-benchmark -P $pipeline against $contender: ${redis_benchmark_rate[$contender/$pipeline]} requests/s"
}

run_redis_benchmark() {
    local round=$1 contender=$2 pipeline=$3
    local rate=${redis_benchmark_rate[$contender/$pipeline]}
    local requests
    requests=$(awk -v r="$rate" -v s="$bench_seconds" 'BEGIN { n = int(r * s); printf "%.0f\n", (n < 1000 ? 1000 : n) }')
    redis_benchmark_command "$contender" "$pipeline" "$requests"
    measure "$round" "redis-benchmark-P$pipeline" "$contender" redis-benchmark \
        "$results_dir/r$round-redis-benchmark-P$pipeline-$contender" -- "${redis_benchmark_args[@]}"
    [[ -n $last_ops_per_second ]] && redis_benchmark_rate[$contender/$pipeline]=$last_ops_per_second
    return 0
}

run_tally_bench_resp() {
    local round=$1 contender=$2 pipeline=$3 target=redis tokens=false
    case $contender in
        tally-resp-tokens) target=resp tokens=true ;;
        tally-resp-no-tokens) target=resp ;;
    esac
    local output=$results_dir/r$round-tally-bench-P$pipeline-$contender
    tally_operation=add
    measure "$round" "tally-bench-P$pipeline" "$contender" tally "$output" -- \
        "$tally_bin" bench --target "$target" --address "$(resp_address "$contender")" \
        --connections "$connections" --pipeline "$pipeline" --counters "$key_space" \
        --tokens "$tokens" --duration-seconds "$bench_seconds" --quiet --json "$output.json"
}

run_tally_api() {
    local round=$1 contender=$2 target operation address
    target=${contender#tally-}
    target=${target%-*}
    operation=${contender##*-}
    if [[ $target == http ]]; then address=http://$tally_http; else address=http://$tally_grpc; fi
    local output=$results_dir/r$round-tally-api-$contender
    tally_operation=$operation
    measure "$round" tally-api "$contender" tally "$output" -- \
        "$tally_bin" bench --target "$target" --address "$address" --connections "$connections" \
        --batch 1 --counters "$key_space" --tokens true --mix "$operation=1" \
        --duration-seconds "$bench_seconds" --quiet --json "$output.json"
}

run_pgbench() {
    local round=$1
    local output=$results_dir/r$round-postgres
    measure "$round" postgres postgres pgbench "$output" -- \
        pgbench -h 127.0.0.1 -p "$postgres_port" -U postgres -n -c "$connections" -j 2 \
        -T "$bench_seconds" -f "$work_dir/upsert.sql" -l --log-prefix="$output.log" postgres
}

# Prints the words of the list rotated left by COUNT places.
rotate() {
    local count=$1
    shift
    local items=("$@")
    local length=${#items[@]} index
    for ((index = 0; index < length; index++)); do
        echo "${items[(index + count) % length]}"
    done
}

# ---------------------------------------------------------------------------------------
# Main

install_missing_tools
for tool in redis-server redis-cli redis-benchmark pgbench psql pg_isready python3 setpriv timeout; do
    command -v "$tool" >/dev/null || die "$tool not found; install it and run again"
done

mkdir -p "$results_dir"
work_dir=$(mktemp -d "${TMPDIR:-/tmp}/tally-bench.XXXXXX")
uptime_before=$(uptime)
log "load before the run: $uptime_before"
log "results: $results_dir"
describe_machine "$repo_dir" "$work_dir" >"$results_dir/machine.txt"

prepare_tally_binary "$work_dir"
tally_version=$(tally_source_version)

printf 'round\tcomparison\tcontender\tops_per_second\tp50_ms\tp99_ms\tavg_ms\tfailed\tstatus\tcommand\n' >"$measurements"

start_tally "$work_dir/tally-data" "$results_dir/tally" "$startup_timeout_seconds" ||
    die "tally did not start; see $results_dir/tally.err"
log "tally: pid $tally_pid, http=$tally_http grpc=$tally_grpc resp=$tally_resp"
start_redis none --save '' --appendonly no
start_redis everysec --save '' --appendonly yes --appendfsync everysec
start_redis always --save '' --appendonly yes --appendfsync always
start_postgres

# Create the counters that the gets read, so that a get finds a counter instead of
# returning 404 early. 500,000 uniform adds reach about 99% of the 100,000 keys.
log "writing 500,000 adds over $key_space keys into Tally before the measurements"
timeout "$measurement_timeout_seconds" "$tally_bin" bench --target grpc --address "http://$tally_grpc" \
    --connections 8 --batch 1000 --tokens false --operations 500000 --counters "$key_space" --quiet \
    >"$results_dir/prefill.out" 2>&1 || die "writing the first counters into Tally failed; see $results_dir/prefill.out"

redis_contenders=(tally-resp redis-none redis-everysec redis-always)
resp_contenders=(tally-resp-tokens tally-resp-no-tokens redis-none redis-everysec redis-always)
api_add_contenders=(tally-http-add tally-grpc-add)
api_get_contenders=(tally-http-get tally-grpc-get)

for pipeline in 1 16; do
    for contender in "${redis_contenders[@]}"; do
        calibrate_redis_benchmark "$contender" "$pipeline"
    done
done

for ((round = 1; round <= bench_rounds; round++)); do
    shift_by=$((round - 1))
    log "round $round of $bench_rounds"
    for pipeline in 1 16; do
        for contender in $(rotate "$shift_by" "${redis_contenders[@]}"); do
            run_redis_benchmark "$round" "$contender" "$pipeline"
        done
    done
    for pipeline in 1 16; do
        for contender in $(rotate "$shift_by" "${resp_contenders[@]}"); do
            run_tally_bench_resp "$round" "$contender" "$pipeline"
        done
    done
    # Gets run after the adds of the same round.
    for contender in $(rotate "$shift_by" "${api_add_contenders[@]}") $(rotate "$shift_by" "${api_get_contenders[@]}"); do
        run_tally_api "$round" "$contender"
    done
    run_pgbench "$round"
done

stop_started_processes
uptime_after=$(uptime)
log "load after the run: $uptime_after"

# The command as typed, with the settings that came from the environment.
command_text="scripts/bench.sh"
[[ -n ${BENCH_ROUNDS:-} ]] && command_text="BENCH_ROUNDS=$bench_rounds $command_text"
[[ -n ${BENCH_SECONDS:-} ]] && command_text="BENCH_SECONDS=$bench_seconds $command_text"

redis_version=$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')
postgres_version=$("$postgres_bin_dir/postgres" --version | awk '{ print $3 }')
python3 "$results_py" bench-report --markdown "$markdown" --tsv "$measurements" \
    --machine "$results_dir/machine.txt" --summary-json "$results_dir/summary.json" \
    --meta "date=$(date -u '+%Y-%m-%d %H:%M UTC')" \
    --meta "command=$command_text" \
    --meta "seconds=$bench_seconds" \
    --meta "rounds=$bench_rounds" \
    --meta "tally_version=$tally_version" \
    --meta "redis_version=redis-server and redis-benchmark $redis_version (Debian package)" \
    --meta "redis_short_version=Redis $redis_version" \
    --meta "postgres_version=PostgreSQL $postgres_version and $(pgbench --version)" \
    --meta "postgres_short_version=PostgreSQL $postgres_version" \
    --meta "uptime_before=$uptime_before" \
    --meta "uptime_after=$uptime_after" \
    --meta "results_dir=${results_dir#"$repo_dir"/}"
log "wrote the comparison results to $markdown and $results_dir/summary.json"

if ((failed_measurements > 0)); then
    log "$failed_measurements measurement(s) failed; see the notes column in $markdown"
    exit 1
fi
