"""Helpers shared by the end-to-end clients e2e_grpc.py and e2e_load.py.

Both scripts run against a Tally server that scripts/e2e.sh started on loopback,
and both import the Python stubs that grpcio-tools generated from
proto/tally/v1/tally.proto.
"""

import importlib
import json
import sys
import traceback
import urllib.error
import urllib.request

import grpc

# Seconds that one unary gRPC call or HTTP request may take before it fails.
CALL_TIMEOUT_SECONDS = 30

# An opener that ignores proxy settings from the environment, because the server
# always runs on this machine.
_HTTP_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class CheckFailed(Exception):
    """A check found a result other than the expected one."""


def expect(condition, message):
    """Raise CheckFailed with `message` unless `condition` is true."""
    if not condition:
        raise CheckFailed(message)


def expect_equal(actual, expected, description):
    """Raise CheckFailed unless `actual == expected`, naming both values."""
    if actual != expected:
        raise CheckFailed(f"{description}: expected {expected!r}, got {actual!r}")


def expect_rpc_error(expected_code, call, request, description, detail_contains=None):
    """Call `call(request)` and check that it fails with `expected_code`.

    When `detail_contains` is set, the status message must contain it too.
    Returns the grpc.RpcError so the caller can check more.
    """
    try:
        response = call(request, timeout=CALL_TIMEOUT_SECONDS)
    except grpc.RpcError as error:
        code = error.code()
        details = error.details() or ""
        if code != expected_code:
            raise CheckFailed(
                f"{description}: expected status {expected_code.name}, "
                f"got {code.name} with message {details!r}"
            ) from None
        if detail_contains is not None and detail_contains not in details:
            raise CheckFailed(
                f"{description}: expected the status message to name {detail_contains!r}, "
                f"got {details!r}"
            ) from None
        return error
    raise CheckFailed(
        f"{description}: expected status {expected_code.name}, got a response: {response!r}"
    )


class CheckRunner:
    """Runs named check groups, prints PASS or FAIL for each, and counts them."""

    def __init__(self, label):
        self.label = label
        self.passed = 0
        self.failed = 0

    def run(self, name, check):
        """Run `check()` as the group `name`. An exception fails only this group."""
        try:
            check()
        except CheckFailed as error:
            self.failed += 1
            print(f"FAIL {name}: {error}", flush=True)
        except grpc.RpcError as error:
            self.failed += 1
            print(
                f"FAIL {name}: unexpected gRPC status {error.code().name}: {error.details()!r}",
                flush=True,
            )
        except Exception:  # A crash in one group must not hide the results of the others.
            self.failed += 1
            print(f"FAIL {name}: the check raised an exception:", flush=True)
            traceback.print_exc(file=sys.stdout)
        else:
            self.passed += 1
            print(f"PASS {name}", flush=True)

    def finish(self):
        """Print the closing line that scripts/e2e.sh parses and return the exit code."""
        print(f"{self.label}: {self.passed} passed, {self.failed} failed", flush=True)
        return 0 if self.failed == 0 else 1


def import_stubs(stubs_dir):
    """Import tally_pb2 and tally_pb2_grpc from the grpcio-tools output in `stubs_dir`."""
    sys.path.insert(0, stubs_dir)
    messages = importlib.import_module("tally.v1.tally_pb2")
    services = importlib.import_module("tally.v1.tally_pb2_grpc")
    return messages, services


def open_channel(address):
    """Open an insecure gRPC channel to `address` (host:port) and wait until it is ready.

    Each channel gets its own connection, so concurrent workers do not share one
    HTTP/2 connection. Proxy settings from the environment are ignored because the
    server always runs on this machine.
    """
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.enable_http_proxy", 0)]
    channel = grpc.insecure_channel(address, options=options)
    grpc.channel_ready_future(channel).result(timeout=CALL_TIMEOUT_SECONDS)
    return channel


def http_json(http_address, method, path, body=None):
    """Send one HTTP request with an optional JSON body to the server.

    Returns (status, raw body bytes, parsed JSON or None when the body is not JSON).
    Error statuses are returned, not raised.
    """
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{http_address}{path}", data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _HTTP_OPENER.open(request, timeout=CALL_TIMEOUT_SECONDS) as response:
            status = response.status
            raw = response.read()
    except urllib.error.HTTPError as error:
        status = error.code
        raw = error.read()
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    return status, raw, parsed
