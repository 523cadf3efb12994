# shellcheck shell=bash disable=SC2034  # the variables set here are read by the scripts that source this file
# Shell functions shared by scripts/bench.sh and scripts/scale.sh. Sourcing it defines the
# functions and the array `started_pids` and runs nothing.
#
# Every server starts on 127.0.0.1 and is registered in `started_pids`, so that
# `stop_started_processes` (called from the EXIT trap of each script) stops exactly the
# processes that the script started, by PID.

started_pids=()

# Seconds to wait for a server to exit after SIGTERM (SIGINT for PostgreSQL) before SIGKILL.
shutdown_timeout_seconds=30

log() {
    echo "[$(date +%H:%M:%S)] $*" >&2
}

die() {
    echo "error: $*" >&2
    exit 1
}

# Prints the current time in seconds since the epoch, with nanoseconds.
now_seconds() {
    date +%s.%N
}

# Prints SECOND - FIRST, in seconds with three decimals.
seconds_between() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'
}

# Prints a TCP port on 127.0.0.1 that was free a moment ago. If another process takes it
# before the caller binds it, the server fails to start and the script stops with its log.
free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Builds the release binary unless TALLY_BIN names one, and copies it to DIR/tally, so that a
# rebuild by someone else during the run does not change the binary under test.
# Sets `tally_bin` to the copy.
prepare_tally_binary() {
    local dir=$1
    local source_bin
    if [[ -n ${TALLY_BIN:-} ]]; then
        source_bin=$TALLY_BIN
        [[ -x $source_bin ]] || die "TALLY_BIN=$source_bin is not an executable file"
    else
        command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (see README.md) or set TALLY_BIN"
        log "building the release binary (cargo build --release -p tally)"
        cargo build --release -p tally || die "cargo build --release -p tally failed; see the output above"
        source_bin=${CARGO_TARGET_DIR:-$repo_dir/target}/release/tally
    fi
    cp "$source_bin" "$dir/tally"
    tally_bin=$dir/tally
}

# Prints the commit the binary was built from, with "+ uncommitted changes" when the work
# tree differs from it.
tally_source_version() {
    local commit
    commit=$(git -C "$repo_dir" rev-parse --short HEAD 2>/dev/null) || {
        echo "unknown (not a git checkout)"
        return
    }
    if [[ -n $(git -C "$repo_dir" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
        echo "$commit + uncommitted changes"
    else
        echo "$commit"
    fi
}

# Starts `tally serve` on DATA_DIR with every front end on a free loopback port, waits for
# its "listening" line and sets tally_pid, tally_http, tally_grpc, tally_resp and
# tally_start_seconds (time from exec to the listening line). Output goes to LOG_PREFIX.out
# and LOG_PREFIX.err (appended). Extra arguments are passed to `tally serve`.
# Returns 1 when the line does not appear within TIMEOUT seconds.
start_tally() {
    local data_dir=$1 log_prefix=$2 timeout_seconds=$3
    shift 3
    local out_file=$log_prefix.out
    : >"$out_file"
    local started
    started=$(now_seconds)
    "$tally_bin" serve --data-dir "$data_dir" \
        --http-listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0 --resp-listen 127.0.0.1:0 \
        "$@" >>"$out_file" 2>>"$log_prefix.err" &
    tally_pid=$!
    started_pids+=("$tally_pid")

    local line=
    while true; do
        line=$(grep -m1 '^listening ' "$out_file" || true)
        [[ -n $line ]] && break
        if ! kill -0 "$tally_pid" 2>/dev/null; then
            log "tally (pid $tally_pid) exited before listening; see $log_prefix.err"
            return 1
        fi
        if (($(awk -v a="$started" -v b="$(now_seconds)" -v t="$timeout_seconds" 'BEGIN { print (b - a > t) }'))); then
            log "tally (pid $tally_pid) did not print its listening line within $timeout_seconds s"
            return 1
        fi
        sleep 0.05
    done
    tally_start_seconds=$(seconds_between "$started" "$(now_seconds)")
    tally_http=$(sed -n 's/.* http=\([^ ]*\).*/\1/p' <<<"$line")
    tally_grpc=$(sed -n 's/.* grpc=\([^ ]*\).*/\1/p' <<<"$line")
    tally_resp=$(sed -n 's/.* resp=\([^ ]*\).*/\1/p' <<<"$line")
    [[ -n $tally_http && -n $tally_grpc && -n $tally_resp ]] ||
        die "cannot read the addresses from tally's line: $line"
}

# Removes PID from started_pids.
forget_pid() {
    local pid=$1 kept=() candidate
    for candidate in "${started_pids[@]}"; do
        [[ $candidate == "$pid" ]] || kept+=("$candidate")
    done
    started_pids=("${kept[@]}")
}

# Sends SIGNAL to PID, waits up to shutdown_timeout_seconds for it to exit, then sends SIGKILL.
# Sets stop_seconds to the time the process took to exit.
stop_process() {
    local pid=$1 signal=${2:-TERM}
    forget_pid "$pid"
    stop_seconds=0
    kill -0 "$pid" 2>/dev/null || {
        wait "$pid" 2>/dev/null || true
        return 0
    }
    local started
    started=$(now_seconds)
    kill "-$signal" "$pid" 2>/dev/null || true
    local waited=0
    while kill -0 "$pid" 2>/dev/null && ((waited < shutdown_timeout_seconds * 20)); do
        sleep 0.05
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "process $pid did not exit $shutdown_timeout_seconds s after SIG$signal; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    stop_seconds=$(seconds_between "$started" "$(now_seconds)")
}

# Stops every process still in started_pids. PostgreSQL postmasters listed in
# `postgres_pids` get SIGINT (fast shutdown); the others SIGTERM.
stop_started_processes() {
    local pid signal
    for pid in "${started_pids[@]}"; do
        signal=TERM
        [[ " ${postgres_pids[*]:-} " == *" $pid "* ]] && signal=INT
        stop_process "$pid" "$signal"
    done
}

# Prints the resident set size of PID in bytes (VmRSS from /proc). The awk programs here use
# printf "%.0f" because mawk's print switches to exponent notation above 2^31.
resident_bytes() {
    awk '/^VmRSS:/ { printf "%.0f\n", $2 * 1024 }' "/proc/$1/status"
}

# Prints the machine description: cores, memory, CPU model, kernel and the disks of the
# given directories.
describe_machine() {
    echo "nproc: $(nproc)"
    echo "CPU: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "kernel: $(uname -sr)"
    echo "free -g:"
    free -g | sed 's/^/    /'
    echo "df -h:"
    df -h "$@" | awk 'NR == 1 || !seen[$0]++' | sed 's/^/    /'
}
