//! A first check that the harness starts the binary and both front ends answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::frontend::{Frontend, token};
use common::{TestServer, unique};

#[tokio::test]
async fn both_front_ends_share_counters() {
    let server = TestServer::start();
    let mut http = server.http_client();
    let mut grpc = server.grpc_client().await;
    let counter = unique("smoke");

    assert_eq!(
        http.add_and_get("default", &counter, 2, token("a"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        grpc.add_and_get("default", &counter, 3, token("b"))
            .await
            .unwrap(),
        5
    );
    assert_eq!(http.get("default", &counter).await.unwrap(), 5);
    assert_eq!(grpc.get("default", &counter).await.unwrap(), 5);
}
