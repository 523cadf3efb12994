//! `--max-connections` on the HTTP and gRPC front ends: one connection past the limit is
//! rejected (HTTP with 429 through curl, gRPC with `RESOURCE_EXHAUSTED`), the open ones keep
//! working, and a closed one makes room. The Redis protocol's limit is tested in `resp.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestServer;
use common::frontend::Grpc;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};
use tally_server::proto::ListNamespacesRequest;

fn start_with_max_connections(max_connections: usize) -> TestServer {
    TestServer::start_with(
        Vec::new(),
        vec!["--max-connections".into(), max_connections.to_string()],
    )
}

/// Opens an HTTP/1.1 keep-alive connection and reads one response, so that the server counts
/// the connection as open.
fn open_http_connection(server: &TestServer) -> TcpStream {
    let address = server.http.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: tally\r\n\r\n")
        .unwrap();
    let mut response = [0u8; 12];
    stream.read_exact(&mut response).unwrap();
    assert_eq!(&response, b"HTTP/1.1 200");
    stream
}

/// Runs curl for `GET /healthz` and returns the status code and the body.
fn curl_healthz(server: &TestServer) -> (String, String) {
    let output = Command::new("curl")
        .args([
            "--silent",
            "--max-time",
            "10",
            "--write-out",
            "\n%{http_code}",
        ])
        .arg(format!("{}/healthz", server.http))
        .output()
        .expect("curl is required");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.to_owned(), body.to_owned())
}

/// Retries `attempt` every 50 ms until it returns true, for at most 5 s.
fn eventually(what: &str, mut attempt: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !attempt() {
        assert!(Instant::now() < deadline, "{what} within 5 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn http_rejects_one_more_with_429() {
    let server = start_with_max_connections(2);
    let first = open_http_connection(&server);
    let _second = open_http_connection(&server);

    let (status, body) = curl_healthz(&server);
    assert_eq!(status, "429", "{body}");
    assert!(body.contains(r#""code":"overloaded""#), "{body}");
    assert!(body.contains("2 HTTP connections are open"), "{body}");

    drop(first);
    eventually("no room for a new HTTP connection after one closed", || {
        curl_healthz(&server).0 == "200"
    });
}

#[tokio::test]
async fn grpc_rejects_one_more() {
    let server = start_with_max_connections(2);
    let mut first = Grpc::connect(&server.grpc.clone()).await;
    let mut second = Grpc::connect(&server.grpc.clone()).await;
    for client in [&mut first, &mut second] {
        let listed = client.inner().list_namespaces(ListNamespacesRequest {});
        assert!(listed.await.is_ok(), "an admitted client failed");
    }

    let mut third = tally_server::proto::tally_client::TallyClient::connect(server.grpc.clone())
        .await
        .expect("the rejected connection did not complete the HTTP/2 handshake");
    let rejected = third.list_namespaces(ListNamespacesRequest {}).await;
    let status = rejected.expect_err("a third gRPC connection was served");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
    assert!(
        status.message().contains("2 gRPC connections are open"),
        "{status}"
    );
    let listed = second.inner().list_namespaces(ListNamespacesRequest {});
    assert!(
        listed.await.is_ok(),
        "an admitted client failed after the rejection"
    );

    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let address = server.grpc.clone();
        if let Ok(mut client) =
            tally_server::proto::tally_client::TallyClient::connect(address).await
            && client
                .list_namespaces(ListNamespacesRequest {})
                .await
                .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no room for a new gRPC connection 5 s after one closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
