"""End-to-end checks of Tally's gRPC API, run by scripts/e2e.sh.

Drives a running server with the stubs that grpcio-tools generated from
proto/tally/v1/tally.proto, and crosses over to the HTTP API (through urllib) to
check that both APIs share one set of counters and idempotency tokens.
Prints PASS or FAIL per check group and ends with "grpc: N passed, M failed".
"""

import argparse
import sys

import grpc

from e2e_common import (
    CALL_TIMEOUT_SECONDS,
    CheckRunner,
    expect,
    expect_equal,
    expect_rpc_error,
    http_json,
    import_stubs,
    open_channel,
)

NAMESPACE = "grpc"
INT64_MAX = 2**63 - 1


class GrpcSession:
    """The gRPC check groups, sharing one channel and one namespace."""

    def __init__(self, pb, stub, http_address):
        self.pb = pb
        self.stub = stub
        self.http_address = http_address

    def token(self, name, generation_time=""):
        return self.pb.IdempotencyToken(token=name, generation_time=generation_time)

    def add(self, counter, delta, token, namespace=NAMESPACE):
        request = self.pb.AddCountRequest(
            namespace=namespace, counter=counter, delta=delta, idempotency_token=self.token(token)
        )
        return self.stub.AddCount(request, timeout=CALL_TIMEOUT_SECONDS)

    def add_and_get(self, counter, delta, token):
        request = self.pb.AddCountRequest(
            namespace=NAMESPACE, counter=counter, delta=delta, idempotency_token=self.token(token)
        )
        return self.stub.AddAndGetCount(request, timeout=CALL_TIMEOUT_SECONDS)

    def get_value(self, counter, namespace=NAMESPACE):
        request = self.pb.GetCountRequest(namespace=namespace, counter=counter)
        return self.stub.GetCount(request, timeout=CALL_TIMEOUT_SECONDS).value

    def check_put_namespace(self):
        config = self.pb.NamespaceConfig(counter_type=self.pb.COUNTER_TYPE_ACCURATE)
        request = self.pb.PutNamespaceRequest(name=NAMESPACE, config=config)
        namespace = self.stub.PutNamespace(request, timeout=CALL_TIMEOUT_SECONDS)
        expect_equal(namespace.name, NAMESPACE, "PutNamespace name")
        expect_equal(
            namespace.config.counter_type,
            self.pb.COUNTER_TYPE_ACCURATE,
            "PutNamespace counter_type",
        )

    def check_get_namespace(self):
        request = self.pb.GetNamespaceRequest(name=NAMESPACE)
        namespace = self.stub.GetNamespace(request, timeout=CALL_TIMEOUT_SECONDS)
        expect_equal(namespace.name, NAMESPACE, "GetNamespace name")
        expect_equal(
            namespace.config.counter_type,
            self.pb.COUNTER_TYPE_ACCURATE,
            "GetNamespace counter_type",
        )
        for field in (
            "accept_limit_seconds",
            "max_clock_skew_seconds",
            "event_retention_seconds",
            "idempotency_window_seconds",
        ):
            expect(namespace.config.HasField(field), f"GetNamespace returned no {field}: {namespace}")

        listed = self.stub.ListNamespaces(
            self.pb.ListNamespacesRequest(), timeout=CALL_TIMEOUT_SECONDS
        )
        names = {entry.name for entry in listed.namespaces}
        for name in ("default", "e2e", NAMESPACE):
            expect(name in names, f"ListNamespaces is missing {name!r}: got {sorted(names)}")

    def check_add_count(self):
        response = self.add("hits", 7, "grpc-add-1")
        expect(response.event_id > 0, f"AddCount event_id: expected > 0, got {response.event_id}")
        expect_equal(response.duplicate, False, "AddCount duplicate")
        count = self.stub.GetCount(
            self.pb.GetCountRequest(namespace=NAMESPACE, counter="hits"),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        expect_equal(count.value, 7, "GetCount value after AddCount 7")
        expect_equal(count.event_id, 0, "GetCount event_id")
        expect_equal(count.duplicate, False, "GetCount duplicate")

    def check_duplicate_token(self):
        response = self.add("hits", 7, "grpc-add-1")
        expect_equal(response.duplicate, True, "AddCount duplicate on a repeated token")
        expect_equal(self.get_value("hits"), 7, "GetCount value after a repeated token")

    def check_add_and_get(self):
        response = self.add_and_get("hits", 4, "grpc-add-2")
        expect_equal(response.value, 11, "AddAndGetCount value after 7 + 4")
        expect(response.event_id > 0, f"AddAndGetCount event_id: expected > 0, got {response.event_id}")
        expect_equal(response.duplicate, False, "AddAndGetCount duplicate")

        repeated = self.add_and_get("hits", 4, "grpc-add-2")
        expect_equal(repeated.value, 11, "AddAndGetCount value on a repeated token")
        expect_equal(repeated.duplicate, True, "AddAndGetCount duplicate on a repeated token")
        expect_equal(self.get_value("hits"), 11, "GetCount value after AddAndGetCount")

    def check_clear_count(self):
        request = self.pb.ClearCountRequest(
            namespace=NAMESPACE, counter="hits", idempotency_token=self.token("grpc-clear-1")
        )
        response = self.stub.ClearCount(request, timeout=CALL_TIMEOUT_SECONDS)
        expect(response.event_id > 0, f"ClearCount event_id: expected > 0, got {response.event_id}")
        expect_equal(response.duplicate, False, "ClearCount duplicate")
        expect_equal(self.get_value("hits"), 0, "GetCount value after ClearCount")

        repeated = self.stub.ClearCount(request, timeout=CALL_TIMEOUT_SECONDS)
        expect_equal(repeated.duplicate, True, "ClearCount duplicate on a repeated token")

        after_clear = self.add_and_get("hits", 2, "grpc-add-3")
        expect_equal(after_clear.value, 2, "AddAndGetCount value of 2 after ClearCount")

    def check_not_found(self):
        expect_rpc_error(
            grpc.StatusCode.NOT_FOUND,
            self.stub.GetNamespace,
            self.pb.GetNamespaceRequest(name="nosuchnamespace"),
            "GetNamespace of an unknown namespace",
        )
        expect_rpc_error(
            grpc.StatusCode.NOT_FOUND,
            self.stub.AddCount,
            self.pb.AddCountRequest(
                namespace="nosuchnamespace",
                counter="hits",
                delta=1,
                idempotency_token=self.token("grpc-missing-namespace"),
            ),
            "AddCount to an unknown namespace",
        )
        expect_rpc_error(
            grpc.StatusCode.NOT_FOUND,
            self.stub.GetCount,
            self.pb.GetCountRequest(namespace=NAMESPACE, counter="neverwritten"),
            "GetCount of a counter that was never written",
        )

    def check_invalid_argument(self):
        expect_rpc_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            self.stub.AddCount,
            self.pb.AddCountRequest(
                namespace=NAMESPACE, counter="hits", delta=1, idempotency_token=self.token("x" * 129)
            ),
            "AddCount with a 129-byte token",
            detail_contains="token",
        )
        expect_rpc_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            self.stub.AddCount,
            self.pb.AddCountRequest(
                namespace=NAMESPACE,
                counter="hits",
                delta=1,
                idempotency_token=self.token("grpc-bad-time", generation_time="yesterday"),
            ),
            "AddCount with generation_time 'yesterday'",
            detail_contains="generation_time",
        )
        expect_rpc_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            self.stub.AddCount,
            self.pb.AddCountRequest(
                namespace=NAMESPACE, counter="", delta=1, idempotency_token=self.token("grpc-empty-name")
            ),
            "AddCount with an empty counter name",
            detail_contains="counter",
        )
        expect_equal(self.get_value("hits"), 2, "GetCount value after rejected adds")

    def check_already_exists(self):
        self.add("conflict", 1, "grpc-conflict-1")
        expect_rpc_error(
            grpc.StatusCode.ALREADY_EXISTS,
            self.stub.AddCount,
            self.pb.AddCountRequest(
                namespace=NAMESPACE,
                counter="conflict",
                delta=2,
                idempotency_token=self.token("grpc-conflict-1"),
            ),
            "AddCount that reuses a token with another delta",
        )
        expect_equal(self.get_value("conflict"), 1, "GetCount value after the token conflict")

    def check_out_of_range(self):
        self.add("nearmax", INT64_MAX, "grpc-max-1")
        expect_rpc_error(
            grpc.StatusCode.OUT_OF_RANGE,
            self.stub.AddCount,
            self.pb.AddCountRequest(
                namespace=NAMESPACE, counter="nearmax", delta=1, idempotency_token=self.token("grpc-max-2")
            ),
            "AddCount past the int64 maximum",
        )
        expect_equal(self.get_value("nearmax"), INT64_MAX, "GetCount value at the int64 maximum")

    def check_add_batch(self):
        items = [
            self.pb.AddBatchItem(counter="batcha", delta=3, idempotency_token=self.token("grpc-batch-1")),
            self.pb.AddBatchItem(counter="batchb", delta=5, idempotency_token=self.token("grpc-batch-2")),
            self.pb.AddBatchItem(counter="batcha", delta=1, idempotency_token=self.token("y" * 129)),
        ]
        request = self.pb.AddBatchRequest(namespace=NAMESPACE, items=items)
        response = self.stub.AddBatch(request, timeout=CALL_TIMEOUT_SECONDS)
        kinds = [result.WhichOneof("result") for result in response.results]
        expect_equal(kinds, ["ok", "ok", "error"], "AddBatch result kinds")
        expect_equal(response.results[0].ok.duplicate, False, "AddBatch first item duplicate")
        expect_equal(response.results[2].error.code, "invalid_argument", "AddBatch error code")
        expect(
            response.results[2].error.message.startswith("invalid items[2].idempotency_token.token: "),
            f"AddBatch error should name items[2].idempotency_token.token, got {response.results[2].error.message!r}",
        )
        expect_equal(self.get_value("batcha"), 3, "GetCount value of batcha")
        expect_equal(self.get_value("batchb"), 5, "GetCount value of batchb")

        repeated = self.stub.AddBatch(request, timeout=CALL_TIMEOUT_SECONDS)
        duplicates = [result.ok.duplicate for result in repeated.results[:2]]
        expect_equal(duplicates, [True, True], "AddBatch duplicate flags on a repeated batch")
        expect_equal(self.get_value("batcha"), 3, "GetCount value of batcha after a repeated batch")

    def check_list_counters(self):
        listed = self.stub.ListCounters(
            self.pb.ListCountersRequest(namespace=NAMESPACE), timeout=CALL_TIMEOUT_SECONDS
        )
        names = list(listed.counters)
        for name in ("batcha", "batchb", "conflict", "hits", "nearmax"):
            expect(name in names, f"ListCounters is missing {name!r}: got {names}")
        expect_equal(names, sorted(names, key=str.encode), "ListCounters order")

        first_page = self.stub.ListCounters(
            self.pb.ListCountersRequest(namespace=NAMESPACE, limit=1), timeout=CALL_TIMEOUT_SECONDS
        )
        expect_equal(list(first_page.counters), names[:1], "ListCounters with limit 1")
        expect_equal(first_page.next_after, names[0], "ListCounters next_after of the first page")
        rest = self.stub.ListCounters(
            self.pb.ListCountersRequest(namespace=NAMESPACE, after=names[0]),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        expect_equal(list(rest.counters), names[1:], f"ListCounters after {names[0]!r}")
        expect(not rest.HasField("next_after"), f"ListCounters last page has next_after {rest.next_after!r}")

    def check_grpc_to_http(self):
        self.add("fromgrpc", 13, "grpc-cross-1")
        path = f"/v1/namespaces/{NAMESPACE}/counters/fromgrpc"
        status, raw, body = http_json(self.http_address, "GET", path)
        expect_equal(status, 200, f"HTTP GET {path} status (body {raw!r})")
        expect(isinstance(body, dict), f"HTTP GET {path} body is not a JSON object: {raw!r}")
        expect_equal(body.get("value"), 13, f"HTTP GET {path} value")

    def check_http_to_grpc(self):
        path = f"/v1/namespaces/{NAMESPACE}/counters/fromhttp/add"
        body = {"delta": 21, "idempotency_token": {"token": "http-cross-1"}}
        status, raw, parsed = http_json(self.http_address, "POST", path, body)
        expect_equal(status, 200, f"HTTP POST {path} status (body {raw!r})")
        expect(isinstance(parsed, dict) and parsed.get("duplicate") is False, f"HTTP add body: {raw!r}")
        expect_equal(self.get_value("fromhttp"), 21, "GetCount value of a counter written over HTTP")

        # Both APIs share the token store, so the HTTP token is a duplicate over gRPC.
        repeated = self.add("fromhttp", 21, "http-cross-1")
        expect_equal(repeated.duplicate, True, "AddCount duplicate for a token first sent over HTTP")
        expect_rpc_error(
            grpc.StatusCode.ALREADY_EXISTS,
            self.stub.AddCount,
            self.pb.AddCountRequest(
                namespace=NAMESPACE,
                counter="fromhttp",
                delta=22,
                idempotency_token=self.token("http-cross-1"),
            ),
            "AddCount that reuses an HTTP token with another delta",
        )
        expect_equal(self.get_value("fromhttp"), 21, "GetCount value after the repeated token")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc-address", required=True, help="server gRPC address, host:port")
    parser.add_argument("--http-address", required=True, help="server HTTP address, host:port")
    parser.add_argument("--stubs-dir", required=True, help="directory with the generated tally/v1 stubs")
    args = parser.parse_args()

    pb, pb_grpc = import_stubs(args.stubs_dir)
    channel = open_channel(args.grpc_address)
    session = GrpcSession(pb, pb_grpc.TallyStub(channel), args.http_address)
    runner = CheckRunner("grpc")

    # The groups run in order and later ones read counters that earlier ones wrote.
    runner.run("grpc PutNamespace", session.check_put_namespace)
    runner.run("grpc GetNamespace and ListNamespaces", session.check_get_namespace)
    runner.run("grpc AddCount and GetCount", session.check_add_count)
    runner.run("grpc repeated token is a duplicate", session.check_duplicate_token)
    runner.run("grpc AddAndGetCount", session.check_add_and_get)
    runner.run("grpc ClearCount", session.check_clear_count)
    runner.run("grpc NOT_FOUND", session.check_not_found)
    runner.run("grpc INVALID_ARGUMENT", session.check_invalid_argument)
    runner.run("grpc ALREADY_EXISTS", session.check_already_exists)
    runner.run("grpc OUT_OF_RANGE", session.check_out_of_range)
    runner.run("grpc AddBatch", session.check_add_batch)
    runner.run("grpc ListCounters", session.check_list_counters)
    runner.run("grpc write, HTTP read", session.check_grpc_to_http)
    runner.run("HTTP write, grpc read", session.check_http_to_grpc)

    channel.close()
    return runner.finish()


if __name__ == "__main__":
    sys.exit(main())
