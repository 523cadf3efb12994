#!/usr/bin/env bash
# Measures Tally's resident memory per counter, disk bytes per event and restart time, and
# rewrites the scale results and goals in BENCHMARKS.md.
#
# Usage: scripts/scale.sh                          (10,000,000 counters; up to 10 minutes of load)
#        SCALE_COUNTERS=100000 scripts/scale.sh    (smoke run, about a minute)
#
# Steps, on a server started here on 127.0.0.1 with an empty data directory in a temporary
# directory:
#   1. VmRSS of the empty server, and a namespace `scale` whose accept limit is
#      SCALE_ACCEPT_LIMIT_SECONDS, so that its events can be sealed within the run.
#   2. Load: adds without tokens over gRPC (batches of 1000, 8 connections) to counter names
#      drawn uniformly from SCALE_COUNTERS names, in chunks, until SCALE_EVENTS events are
#      written or SCALE_LOAD_SECONDS have passed. Then a forced rollup and VmRSS.
#   3. kill -9, then a restart timed from exec to the "listening" line, then VmRSS. The events
#      of about the last SCALE_ACCEPT_LIMIT_SECONDS of the load are still in the unsealed
#      tail, so this restart replays them. Before each restart the script reads every file of
#      the data directory, so that the store is in the page cache as after a crash of the
#      process alone, and records how much of it was cached before.
#   4. A wait until the accept limit has passed since the load, a forced rollup that seals
#      every event into checkpoints, a SIGTERM shutdown, and `du -sb` of the data directory.
#   5. A restart timed as in 3, of idle counters with no tail, then VmRSS, then a SIGTERM
#      shutdown.
# The number of distinct counters is the count that the server logs when it recovers. The
# report also gives the expected count for uniform sampling with replacement.
#
# Environment:
#   SCALE_COUNTERS                 counter names to draw from (default 10000000)
#   SCALE_EVENTS                   events to write (default 10 per counter name)
#   SCALE_LOAD_SECONDS             time limit of the load, checked between chunks (default 600)
#   SCALE_CHUNK_EVENTS             events per `tally bench` run (default 2000000)
#   SCALE_RESTART_TIMEOUT_SECONDS  time limit of each restart (default 600)
#   SCALE_ACCEPT_LIMIT_SECONDS     accept limit of the namespace `scale` (default 60)
#   TALLY_BIN                      test this tally executable and skip the cargo build
#
# The raw figures go to target/bench-results/scale-TIMESTAMP/. The data directory is created
# under TMPDIR (default /tmp). In runs of this script it took about 100 bytes per event after
# the shutdown and up to about 300 while the journals were still in use.
set -euo pipefail

repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_dir"
# shellcheck source-path=SCRIPTDIR source=bench/lib.sh
source "$repo_dir/scripts/bench/lib.sh"

key_space=${SCALE_COUNTERS:-10000000}
for setting in SCALE_COUNTERS SCALE_EVENTS SCALE_LOAD_SECONDS SCALE_CHUNK_EVENTS SCALE_RESTART_TIMEOUT_SECONDS SCALE_ACCEPT_LIMIT_SECONDS; do
    value=${!setting:-}
    [[ -z $value || $value =~ ^[1-9][0-9]*$ ]] || die "$setting=$value: expected a whole number, at least 1"
done
events_requested=${SCALE_EVENTS:-$((10 * key_space))}
load_limit_seconds=${SCALE_LOAD_SECONDS:-600}
chunk_events=${SCALE_CHUNK_EVENTS:-2000000}
restart_timeout_seconds=${SCALE_RESTART_TIMEOUT_SECONDS:-600}
accept_limit_seconds=${SCALE_ACCEPT_LIMIT_SECONDS:-60}

# Seconds to wait before reading VmRSS, so that start-up and load work settles.
settle_seconds=5
# Seconds to wait for the first, empty start.
startup_timeout_seconds=60

results_root=${CARGO_TARGET_DIR:-$repo_dir/target}/bench-results
stamp=$(date -u +%Y%m%dT%H%M%SZ)
results_dir=$results_root/scale-$stamp
values=$results_dir/values.txt
results_py=$repo_dir/scripts/bench/results.py
markdown=$repo_dir/BENCHMARKS.md

work_dir=

cleanup() {
    local status=$?
    stop_started_processes
    [[ -n $work_dir && -d $work_dir ]] && rm -rf "$work_dir"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Appends KEY=VALUE to the values file that the report reads.
record() {
    echo "$1=$2" >>"$values"
    log "  $1 = $2"
}

# Records the figures of the "recovered state" line in LOG_FILE under the prefix PREFIX.
record_recovery() {
    local log_file=$1 prefix=$2 line field
    line=$(grep 'recovered state' "$log_file" | tail -n 1 || true)
    if [[ -z $line ]]; then
        log "no 'recovered state' line in $log_file; the counter count comes from the estimate"
        return
    fi
    for field in num_counters num_tail_events elapsed_ms; do
        record "${prefix}_$field" "$(sed -n "s/.* $field=\([0-9]*\).*/\1/p" <<<"$line")"
    done
}

# Reads every file of the data directory into the page cache and records, under PREFIX, how
# many of the files' bytes were cached before. Some kernels evict file pages that stay unused
# for seconds (the AMD machine in BENCHMARKS.md runs DAMON's pageout scheme), so without this
# a restart's time depends on when the load last touched each file.
warm_page_cache() {
    local prefix=$1 sizes
    sizes=$(find "$work_dir/data" -type f -print0 |
        xargs -0 fincore --bytes --noheadings --output RES,SIZE |
        awk '{ cached += $1; size += $2 } END { printf "%.0f %.0f\n", cached, size }')
    record "${prefix}_cached_before_bytes" "${sizes% *}"
    record "${prefix}_file_bytes" "${sizes#* }"
    find "$work_dir/data" -type f -exec cat {} + >/dev/null
}

# Restarts tally on the data directory and records the start time under PREFIX, or writes the
# report without it and exits when the restart times out.
restart_tally() {
    local prefix=$1 log_prefix=$results_dir/tally-$1
    warm_page_cache "$prefix"
    log "starting tally on the loaded data directory ($prefix)"
    if ! start_tally "$work_dir/data" "$log_prefix" "$restart_timeout_seconds"; then
        stop_process "$tally_pid" KILL
        write_report
        die "tally did not restart within $restart_timeout_seconds s; see $log_prefix.err"
    fi
    record "${prefix}_seconds" "$tally_start_seconds"
    record_recovery "$log_prefix.err" "$prefix"
    sleep "$settle_seconds"
    record "rss_$prefix" "$(resident_bytes "$tally_pid")"
}

rollup() {
    curl -sf -X POST "http://$tally_http/v1/admin/rollup" >>"$results_dir/rollups.json" ||
        die "POST /v1/admin/rollup failed"
    echo >>"$results_dir/rollups.json"
}

write_report() {
    local command_text=scripts/scale.sh setting
    for setting in SCALE_ACCEPT_LIMIT_SECONDS SCALE_RESTART_TIMEOUT_SECONDS SCALE_CHUNK_EVENTS SCALE_LOAD_SECONDS SCALE_EVENTS SCALE_COUNTERS; do
        [[ -n ${!setting:-} ]] && command_text="$setting=${!setting} $command_text"
    done
    python3 "$results_py" scale-report --markdown "$markdown" --values "$values" \
        --machine "$results_dir/machine.txt" --summary-json "$results_dir/summary.json" \
        --meta "date=$(date -u '+%Y-%m-%d %H:%M UTC')" \
        --meta "command=$command_text" \
        --meta "tally_version=$tally_version" \
        --meta "uptime_before=$uptime_before" \
        --meta "uptime_after=$(uptime)" \
        --meta "results_dir=${results_dir#"$repo_dir"/}"
    log "wrote the scale results to $markdown and $results_dir/summary.json"
}

for tool in python3 curl timeout du fincore; do
    command -v "$tool" >/dev/null || die "$tool not found; install it and run again"
done

mkdir -p "$results_dir"
: >"$values"
work_dir=$(mktemp -d "${TMPDIR:-/tmp}/tally-scale.XXXXXX")
uptime_before=$(uptime)
log "load before the run: $uptime_before"
log "results: $results_dir"
describe_machine "$repo_dir" "$work_dir" >"$results_dir/machine.txt"

prepare_tally_binary "$work_dir"
tally_version=$(tally_source_version)

record key_space "$key_space"
record events_requested "$events_requested"
record chunk_events "$chunk_events"
record load_limit_seconds "$load_limit_seconds"
record accept_limit_seconds "$accept_limit_seconds"

# 1. The empty server.
start_tally "$work_dir/data" "$results_dir/tally-empty" "$startup_timeout_seconds" ||
    die "tally did not start; see $results_dir/tally-empty.err"
log "tally: pid $tally_pid, http=$tally_http grpc=$tally_grpc"
sleep "$settle_seconds"
record rss_empty "$(resident_bytes "$tally_pid")"
curl -sf -X PUT "http://$tally_http/v1/namespaces/scale" -H 'content-type: application/json' \
    -d "{\"accept_limit_seconds\": $accept_limit_seconds}" >"$results_dir/namespace.json" ||
    die "creating the namespace scale failed"

# 2. The load, in chunks so that the time limit is checked between them.
events_sent=0
load_failed_requests=0
limited_by_time=0
chunk=0
load_started=$(now_seconds)
while ((events_sent < events_requested)); do
    elapsed=$(seconds_between "$load_started" "$(now_seconds)")
    if (($(awk -v e="$elapsed" -v l="$load_limit_seconds" 'BEGIN { print (e >= l) }'))); then
        limited_by_time=1
        log "the load reached its limit of $load_limit_seconds s"
        break
    fi
    chunk=$((chunk + 1))
    operations=$((events_requested - events_sent))
    ((operations > chunk_events)) && operations=$chunk_events
    output=$results_dir/load-$chunk
    # A chunk that runs past the whole time limit plus this margin is stopped. Its number of
    # events would then be unknown, so the script stops too.
    timeout "$((load_limit_seconds + 300))" "$tally_bin" bench --target grpc \
        --address "http://$tally_grpc" --namespace scale --batch 1000 --connections 8 --tokens false \
        --operations "$operations" --counters "$key_space" --distribution uniform \
        --quiet --json "$output.json" >"$output.out" 2>"$output.err" ||
        die "load chunk $chunk failed or timed out; see $output.err"
    read -r chunk_sent chunk_failed < <(python3 -c 'import json, sys
data = json.load(open(sys.argv[1]))
print(data["operations"], data["failed_requests"])' "$output.json")
    events_sent=$((events_sent + chunk_sent))
    load_failed_requests=$((load_failed_requests + chunk_failed))
    log "load chunk $chunk: $chunk_sent events, $chunk_failed failed requests; $events_sent of $events_requested in ${elapsed%.*} s"
done
load_ended=$(now_seconds)
record load_seconds "$(seconds_between "$load_started" "$load_ended")"
record events_sent "$events_sent"
record load_failed_requests "$load_failed_requests"
record limited_by_time "$limited_by_time"

rollup
sleep "$settle_seconds"
record rss_loaded "$(resident_bytes "$tally_pid")"

# 3. kill -9 and restart.
log "killing tally (pid $tally_pid) with SIGKILL"
stop_process "$tally_pid" KILL
restart_tally crash_restart

# 4. Seal every event, then a clean shutdown and the size on disk.
seal_wait=$(awk -v end="$load_ended" -v now="$(now_seconds)" -v limit="$accept_limit_seconds" \
    'BEGIN { wait = end + limit + 2 - now; printf "%d", (wait > 0 ? wait + 1 : 0) }')
log "waiting $seal_wait s until the accept limit has passed since the load"
sleep "$seal_wait"
rollup
log "stopping tally (pid $tally_pid) with SIGTERM"
stop_process "$tally_pid" TERM
record shutdown_seconds "$stop_seconds"
record disk_bytes "$(du -sb "$work_dir/data" | cut -f1)"
record disk_journal_bytes "$(find "$work_dir/data" -maxdepth 1 -name '*.jnl' -printf '%s\n' | awk '{ sum += $1 } END { printf "%.0f\n", sum }')"
# fjall sizes each journal file to 64 MiB before it writes to it, so the blocks written show
# how much of that a start would replay.
record disk_journal_written_bytes "$(find "$work_dir/data" -maxdepth 1 -name '*.jnl' -printf '%b\n' | awk '{ sum += $1 * 512 } END { printf "%.0f\n", sum }')"
record disk_keyspace_bytes "$( (du -sb "$work_dir/data/keyspaces" 2>/dev/null || echo 0) | cut -f1)"

# 5. Restart after the clean shutdown.
restart_tally clean_restart
stop_process "$tally_pid" TERM

write_report
