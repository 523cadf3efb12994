"""Load check for Tally, run by scripts/e2e.sh: concurrent AddBatch calls, verified exactly.

Sends --adds adds (1,000,000 by default) as gRPC AddBatch calls of --batch-size items
from --workers threads, each thread on its own connection. Counter names are drawn
from a Zipf distribution (weight 1/k^s for the k-th of --counters names), deltas are
uniform in 1..10, and every item carries a unique idempotency token. The client keeps
its own total per counter, then reads every counter back with GetCount and compares
exactly. Finally it resends one batch with the same tokens and checks that every item
is a duplicate and no total changed.

Batch i is generated from a random generator seeded with "SEED:i", so the same
--seed and --run-id give the same batches. With --verify-only the script sends
nothing and only compares the server's counters with those totals, which checks a
server restarted on the same data directory.

Prints PASS or FAIL per check group and ends with "LABEL: N passed, M failed".
"""

import argparse
import concurrent.futures
import itertools
import math
import random
import secrets
import sys
import threading
import time

import grpc

from e2e_common import (
    CALL_TIMEOUT_SECONDS,
    CheckRunner,
    expect,
    expect_equal,
    import_stubs,
    open_channel,
)

# Statuses after which a resend with the same tokens is safe, because the server
# applies each token at most once. Items that an earlier attempt applied come back
# with duplicate=true.
RETRYABLE_CODES = {
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
MAX_ATTEMPTS = 8
MAX_BACKOFF_SECONDS = 2.0

# Number of item errors printed in full. The rest are only counted.
MAX_REPORTED_ERRORS = 10


class LoadPlan:
    """The batches of one load run, each generated on demand from the seed."""

    def __init__(self, adds, counters, batch_size, zipf_exponent, seed, run_id):
        self.adds = adds
        self.counters = counters
        self.batch_size = batch_size
        self.seed = seed
        self.run_id = run_id
        self.batch_count = math.ceil(adds / batch_size)
        weights = (1.0 / rank**zipf_exponent for rank in range(1, counters + 1))
        self.cumulative_weights = list(itertools.accumulate(weights))

    def counter_name(self, counter_index):
        return f"c{counter_index + 1}"

    def batch(self, batch_index):
        """Return the items of one batch as (counter index, delta, token) tuples."""
        size = min(self.batch_size, self.adds - batch_index * self.batch_size)
        rng = random.Random(f"{self.seed}:{batch_index}")
        counter_indexes = rng.choices(
            range(self.counters), cum_weights=self.cumulative_weights, k=size
        )
        deltas = [rng.randint(1, 10) for _ in range(size)]
        tokens = [f"load-{self.run_id}-{batch_index}-{item}" for item in range(size)]
        return list(zip(counter_indexes, deltas, tokens))

    def expected_totals(self):
        """Sum the deltas of every batch per counter, without sending anything."""
        totals = [0] * self.counters
        for batch_index in range(self.batch_count):
            for counter_index, delta, _token in self.batch(batch_index):
                totals[counter_index] += delta
        return totals


class SendResult:
    """What one worker sent and what the server returned for it."""

    def __init__(self, counters):
        self.totals = [0] * counters
        self.items_ok = 0
        self.batches = 0
        self.retried_calls = 0
        self.item_errors = 0
        self.unexpected_duplicates = 0
        self.messages = []

    def report(self, message):
        if len(self.messages) < MAX_REPORTED_ERRORS:
            self.messages.append(message)


def add_batch_with_retry(stub, request, deadline):
    """Send one AddBatch call, resending it after a retryable status.

    Returns (response, number of resends). Stops retrying at MAX_ATTEMPTS or after
    `deadline` (time.monotonic() seconds) and then raises the last grpc.RpcError.
    """
    for attempt in range(MAX_ATTEMPTS):
        try:
            return stub.AddBatch(request, timeout=CALL_TIMEOUT_SECONDS), attempt
        except grpc.RpcError as error:
            last_attempt = attempt + 1 == MAX_ATTEMPTS or time.monotonic() > deadline
            if error.code() not in RETRYABLE_CODES or last_attempt:
                raise
            time.sleep(min(0.05 * 2**attempt, MAX_BACKOFF_SECONDS))
    raise AssertionError("unreachable: the last attempt returns or raises")


class LoadRun:
    """One load run against one server: send, read back, resend one batch."""

    def __init__(self, pb, pb_grpc, args, plan):
        self.pb = pb
        self.pb_grpc = pb_grpc
        self.args = args
        self.plan = plan
        self.expected = None
        self.progress_lock = threading.Lock()
        self.items_sent = 0
        self.stop = threading.Event()

    def batch_request(self, batch_items):
        items = [
            self.pb.AddBatchItem(
                counter=self.plan.counter_name(counter_index),
                delta=delta,
                idempotency_token=self.pb.IdempotencyToken(token=token),
            )
            for counter_index, delta, token in batch_items
        ]
        return self.pb.AddBatchRequest(namespace=self.args.namespace, items=items)

    def put_namespace(self):
        channel = open_channel(self.args.grpc_address)
        stub = self.pb_grpc.TallyStub(channel)
        config = self.pb.NamespaceConfig(counter_type=self.pb.COUNTER_TYPE_ACCURATE)
        request = self.pb.PutNamespaceRequest(name=self.args.namespace, config=config)
        stub.PutNamespace(request, timeout=CALL_TIMEOUT_SECONDS)
        channel.close()

    def send_worker(self, worker_index, deadline):
        """Send every batch whose index is worker_index modulo the worker count."""
        result = SendResult(self.plan.counters)
        channel = open_channel(self.args.grpc_address)
        stub = self.pb_grpc.TallyStub(channel)
        try:
            for batch_index in range(worker_index, self.plan.batch_count, self.args.workers):
                if self.stop.is_set():
                    break
                if time.monotonic() > deadline:
                    result.report(f"the time limit of {self.args.max_seconds} s ran out")
                    self.stop.set()
                    break
                batch_items = self.plan.batch(batch_index)
                response, resends = add_batch_with_retry(
                    stub, self.batch_request(batch_items), deadline
                )
                result.retried_calls += resends
                self.record_results(result, batch_index, batch_items, response, resends)
                result.batches += 1
                with self.progress_lock:
                    self.items_sent += len(batch_items)
        except Exception:
            self.stop.set()
            raise
        finally:
            channel.close()
        return result

    def record_results(self, result, batch_index, batch_items, response, resends):
        if len(response.results) != len(batch_items):
            result.item_errors += len(batch_items)
            result.report(
                f"batch {batch_index}: sent {len(batch_items)} items, "
                f"got {len(response.results)} results"
            )
            return
        for (counter_index, delta, token), item_result in zip(batch_items, response.results):
            kind = item_result.WhichOneof("result")
            if kind != "ok":
                result.item_errors += 1
                result.report(
                    f"batch {batch_index}, token {token}: {kind} "
                    f"{item_result.error.code!r} {item_result.error.message!r}"
                )
                continue
            # A resent batch may contain items that the lost attempt applied, and the
            # server reports those as duplicates. On a first attempt a duplicate means
            # that a token was not unique or the server mixed up tokens.
            if item_result.ok.duplicate and resends == 0:
                result.unexpected_duplicates += 1
                result.report(f"batch {batch_index}, token {token}: duplicate on the first send")
                continue
            result.totals[counter_index] += delta
            result.items_ok += 1

    def check_send(self):
        self.put_namespace()
        deadline = time.monotonic() + self.args.max_seconds
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.args.workers) as pool:
            futures = [
                pool.submit(self.send_worker, worker_index, deadline)
                for worker_index in range(self.args.workers)
            ]
            pending = set(futures)
            while pending:
                _done, pending = concurrent.futures.wait(pending, timeout=15)
                elapsed = time.monotonic() - started
                with self.progress_lock:
                    sent = self.items_sent
                print(f"load: {sent} of {self.plan.adds} adds sent after {elapsed:.0f} s", flush=True)
            results = [future.result() for future in futures]
        seconds = time.monotonic() - started

        self.expected = [sum(column) for column in zip(*(r.totals for r in results))]
        items_ok = sum(r.items_ok for r in results)
        batches = sum(r.batches for r in results)
        retried = sum(r.retried_calls for r in results)
        written = sum(1 for total in self.expected if total > 0)
        print(
            f"load: {items_ok} adds in {batches} AddBatch calls of up to {self.plan.batch_size} "
            f"to {written} of {self.plan.counters} counters, {self.args.workers} workers, "
            f"{seconds:.1f} s, {items_ok / seconds:.0f} adds/s, {retried} calls resent",
            flush=True,
        )
        for message in (m for r in results for m in r.messages):
            print(f"load: {message}", flush=True)

        expect_equal(sum(r.item_errors for r in results), 0, "items that returned an error")
        expect_equal(
            sum(r.unexpected_duplicates for r in results), 0, "items that were duplicates on the first send"
        )
        expect_equal(batches, self.plan.batch_count, "AddBatch calls completed")
        expect_equal(items_ok, self.plan.adds, "items applied")

    def read_counters(self, counter_indexes):
        """Return {counter index: value, or None when GetCount returns NOT_FOUND}."""
        channel = open_channel(self.args.grpc_address)
        stub = self.pb_grpc.TallyStub(channel)
        values = {}
        try:
            for counter_index in counter_indexes:
                request = self.pb.GetCountRequest(
                    namespace=self.args.namespace, counter=self.plan.counter_name(counter_index)
                )
                try:
                    values[counter_index] = stub.GetCount(request, timeout=CALL_TIMEOUT_SECONDS).value
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                    values[counter_index] = None
        finally:
            channel.close()
        return values

    def compare_counters(self, counter_indexes):
        """Read the counters in parallel and raise CheckFailed on any difference."""
        counter_indexes = list(counter_indexes)
        workers = self.args.workers
        chunks = [counter_indexes[start::workers] for start in range(workers)]
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            values = {}
            for chunk_values in pool.map(self.read_counters, chunks):
                values.update(chunk_values)
        seconds = time.monotonic() - started

        mismatches = []
        for counter_index in counter_indexes:
            expected = self.expected[counter_index]
            # A counter that no item reached was never written, so GetCount returns NOT_FOUND.
            expected_value = expected if expected > 0 else None
            if values[counter_index] != expected_value:
                mismatches.append((self.plan.counter_name(counter_index), expected_value, values[counter_index]))
        print(
            f"load: read {len(counter_indexes)} counters in {seconds:.1f} s, "
            f"{len(mismatches)} differ from the client's totals",
            flush=True,
        )
        for name, expected_value, actual in mismatches[:MAX_REPORTED_ERRORS]:
            print(f"load: counter {name}: expected {expected_value}, server has {actual}", flush=True)
        expect(
            not mismatches,
            f"{len(mismatches)} of {len(counter_indexes)} counters differ from the client's totals "
            "(None means NOT_FOUND)",
        )

    def check_read_back(self):
        expect(self.expected is not None, "no totals to compare because the send step failed")
        self.compare_counters(range(self.plan.counters))

    def check_resend(self):
        expect(self.expected is not None, "no totals to compare because the send step failed")
        batch_items = self.plan.batch(0)
        channel = open_channel(self.args.grpc_address)
        stub = self.pb_grpc.TallyStub(channel)
        try:
            response = stub.AddBatch(self.batch_request(batch_items), timeout=CALL_TIMEOUT_SECONDS)
        finally:
            channel.close()
        expect_equal(len(response.results), len(batch_items), "results of the resent batch")
        not_duplicate = [
            token
            for (_counter, _delta, token), item_result in zip(batch_items, response.results)
            if item_result.WhichOneof("result") != "ok" or not item_result.ok.duplicate
        ]
        expect(
            not not_duplicate,
            f"{len(not_duplicate)} items of the resent batch were not ok with duplicate=true, "
            f"first tokens: {not_duplicate[:5]}",
        )
        self.compare_counters(sorted({counter_index for counter_index, _delta, _token in batch_items}))

    def check_verify_only(self):
        started = time.monotonic()
        self.expected = self.plan.expected_totals()
        print(f"load: regenerated the totals in {time.monotonic() - started:.1f} s", flush=True)
        self.compare_counters(range(self.plan.counters))


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 1, got {text}")
    return value


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc-address", required=True, help="server gRPC address, host:port")
    parser.add_argument("--stubs-dir", required=True, help="directory with the generated tally/v1 stubs")
    parser.add_argument("--namespace", default="load", help="namespace to create and write (default: load)")
    parser.add_argument("--adds", type=positive_int, default=1_000_000, help="number of adds (default: 1000000)")
    parser.add_argument("--counters", type=positive_int, default=10_000, help="number of counter names (default: 10000)")
    parser.add_argument("--batch-size", type=positive_int, default=1000, help="items per AddBatch call (default: 1000)")
    parser.add_argument("--workers", type=positive_int, default=8, help="concurrent sender threads (default: 8)")
    parser.add_argument("--zipf-exponent", type=float, default=1.1, help="Zipf exponent s (default: 1.1)")
    parser.add_argument("--seed", type=int, default=20240601, help="seed of the batch generator")
    parser.add_argument(
        "--run-id",
        default=None,
        help="text in every token, so runs against one data directory do not collide (default: random)",
    )
    parser.add_argument(
        "--max-seconds", type=positive_int, default=360, help="time limit of the send step in seconds (default: 360)"
    )
    parser.add_argument("--verify-only", action="store_true", help="send nothing, only compare the counters")
    parser.add_argument("--label", default="load", help="word before the closing 'N passed, M failed' line")
    return parser.parse_args()


def main():
    args = parse_args()
    run_id = args.run_id or secrets.token_hex(4)
    pb, pb_grpc = import_stubs(args.stubs_dir)
    plan = LoadPlan(args.adds, args.counters, args.batch_size, args.zipf_exponent, args.seed, run_id)
    run = LoadRun(pb, pb_grpc, args, plan)
    runner = CheckRunner(args.label)

    if args.verify_only:
        runner.run("load counters match after restart", run.check_verify_only)
    else:
        runner.run(f"load {args.adds} adds all applied", run.check_send)
        runner.run("load counters match the client's totals", run.check_read_back)
        runner.run("load resent batch changes nothing", run.check_resend)
    return runner.finish()


if __name__ == "__main__":
    sys.exit(main())
