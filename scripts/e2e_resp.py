"""End-to-end checks of Tally's Redis protocol front end with the redis-py client.

scripts/e2e.sh runs this script against a Tally server that it started on loopback.
Every counter name carries a run ID, so a rerun on the same data directory starts from zero.
"""

import argparse
import sys
import uuid

import redis

from e2e_common import CheckRunner, CheckFailed, expect, expect_equal

# Seconds that one command may take before redis-py gives up.
COMMAND_TIMEOUT_SECONDS = 30


def check_transaction(client, name):
    """A default redis-py pipeline is a MULTI/EXEC transaction; its changes all apply."""
    pipeline = client.pipeline()
    pipeline.incr(name("views"))
    pipeline.incrby(name("views"), 4)
    pipeline.decr(name("skips"))
    expect_equal(pipeline.execute(), [1, 5, -1], "replies of the transaction")
    expect_equal(client.get(name("views")), b"5", "views after the transaction")


def check_pipeline_without_transaction(client, name):
    """A pipeline without MULTI gets one reply per command, in order."""
    pipeline = client.pipeline(transaction=False)
    for _ in range(100):
        pipeline.incr(name("plays"))
    expect_equal(pipeline.execute(), list(range(1, 101)), "replies of the pipeline")


def check_reads_inside_transaction(client, name):
    """GET, MGET, EXISTS and DEL inside MULTI act at their place in the transaction."""
    pipeline = client.pipeline()
    pipeline.get(name("read"))
    pipeline.incrby(name("read"), 7)
    pipeline.get(name("read"))
    pipeline.mget(name("read"), name("read-missing"))
    pipeline.exists(name("read"), name("read-missing"))
    pipeline.delete(name("read"), name("read-missing"))
    expect_equal(
        pipeline.execute(), [None, 7, b"7", [b"7", None], 1, 1], "replies of the transaction"
    )


def check_set_and_getdel(client, name):
    """SET, GETSET and GETDEL take integer values and reply as Redis does."""
    expect_equal(client.set(name("set"), 5), True, "reply of SET")
    expect_equal(client.incr(name("set")), 6, "INCR after SET")
    expect_equal(client.set(name("set"), -2, get=True), b"6", "reply of SET ... GET")
    expect_equal(client.getset(name("set"), 9), b"-2", "reply of GETSET")
    expect_equal(client.getdel(name("set")), b"9", "reply of GETDEL")
    expect_equal(client.getdel(name("set-missing")), None, "GETDEL of a missing key")
    try:
        client.set(name("set"), "text")
    except redis.ResponseError as error:
        expect("not an integer" in str(error), f"unexpected error: {error}")
    else:
        raise CheckFailed("SET of a text value succeeded")


def check_unknown_discards_transaction(client, name):
    """A command that a transaction cannot queue is rejected, and EXEC then applies nothing."""
    pipeline = client.pipeline()
    pipeline.incr(name("discarded"))
    pipeline.type(name("discarded"))
    try:
        pipeline.execute()
    except redis.ResponseError as error:
        expect("TYPE cannot be queued in a transaction" in str(error), f"unexpected error: {error}")
    else:
        raise CheckFailed("a transaction with a TYPE was executed")
    expect_equal(client.exists(name("discarded")), 0, "counters of the discarded transaction")


def check_overflow_inside_transaction(client, name):
    """An add that would overflow fails on its own; the others in the transaction apply."""
    pipeline = client.pipeline()
    pipeline.incrby(name("big"), 2**63 - 1)
    pipeline.incr(name("big"))
    pipeline.incr(name("small"))
    results = pipeline.execute(raise_on_error=False)
    expect_equal(results[0], 2**63 - 1, "first add")
    expect(isinstance(results[1], redis.ResponseError), f"second add returned {results[1]!r}")
    expect("would overflow" in str(results[1]), f"second add failed with {results[1]}")
    expect_equal(results[2], 1, "add after the failed one")
    expect_equal(client.get(name("big")), str(2**63 - 1).encode(), "value after the overflow")


def check_resp3(client, name):
    """A client that asks for RESP3 gets nulls, maps and the INFO report in their RESP3 forms."""
    expect_equal(client.incrby(name("resp3"), 7), 7, "INCRBY over RESP3")
    expect_equal(client.get(name("missing")), None, "GET of a missing counter")
    expect_equal(client.config_get("appendonly"), {"appendonly": "no"}, "CONFIG GET")
    expect_equal(client.info("persistence").get("loading"), 0, "INFO persistence loading")


def check_client_name(client):
    """redis-py names the connection with CLIENT SETNAME; CLIENT GETNAME returns the name."""
    expect_equal(client.client_getname(), "tally-e2e", "CLIENT GETNAME")


def check_idempotent_add(client, name):
    """A retried TALLY.ADD with the same token replies the same event ID and counts once."""
    first = client.execute_command("TALLY.ADD", name("billing"), 3, "request-1")
    retry = client.execute_command("TALLY.ADD", name("billing"), 3, "request-1")
    expect_equal(retry, first, "event ID of the retry")
    expect_equal(client.get(name("billing")), b"3", "value after the retry")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resp-address", required=True, help="HOST:PORT of Tally's Redis port")
    args = parser.parse_args()
    host, port = args.resp_address.rsplit(":", 1)
    run_id = uuid.uuid4().hex[:12]

    def name(counter):
        return f"e2e-{run_id}-{counter}"

    def connect(**options):
        return redis.Redis(
            host=host, port=int(port), socket_timeout=COMMAND_TIMEOUT_SECONDS, **options
        )

    print(f"redis-py {redis.__version__} against {args.resp_address}", flush=True)
    client = connect()
    runner = CheckRunner("resp")
    resp3_client = connect(protocol=3, decode_responses=True)
    named_client = connect(client_name="tally-e2e", decode_responses=True)
    runner.run("transaction pipeline", lambda: check_transaction(client, name))
    runner.run(
        "pipeline without transaction", lambda: check_pipeline_without_transaction(client, name)
    )
    runner.run("reads inside a transaction", lambda: check_reads_inside_transaction(client, name))
    runner.run("TYPE discards a transaction", lambda: check_unknown_discards_transaction(client, name))
    runner.run("SET, GETSET and GETDEL", lambda: check_set_and_getdel(client, name))
    runner.run(
        "overflow inside a transaction", lambda: check_overflow_inside_transaction(client, name)
    )
    runner.run("RESP3 replies", lambda: check_resp3(resp3_client, name))
    runner.run("client name", lambda: check_client_name(named_client))
    runner.run("idempotent TALLY.ADD", lambda: check_idempotent_add(client, name))
    return runner.finish()


if __name__ == "__main__":
    sys.exit(main())
