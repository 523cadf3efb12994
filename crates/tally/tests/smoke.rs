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

#[tokio::test]
async fn best_effort_lives_in_memory_only() {
    let mut server = TestServer::start();
    let mut http = server.http_client();
    let config = serde_json::json!({ "counter_type": "best_effort" });
    http.put_namespace("fast", config).await.unwrap();

    assert_eq!(
        http.add_and_get("fast", "c", 4, token("a")).await.unwrap(),
        4
    );
    assert_eq!(http.get("fast", "c").await.unwrap(), 4);
    assert_eq!(
        http.list_counters("fast").await.unwrap(),
        vec!["c".to_owned()]
    );

    // No idempotency: the same token counts again.
    assert_eq!(
        http.add_and_get("fast", "c", 4, token("a")).await.unwrap(),
        8
    );

    // No log: a restart loses the value but keeps the namespace.
    server.restart();
    let mut http = server.http_client();
    let lost = http.get("fast", "c").await.unwrap_err();
    assert_eq!(
        lost.class,
        common::frontend::ErrorClass::NotFound,
        "{}",
        lost.message
    );
    assert_eq!(http.add_and_get("fast", "c", 1, None).await.unwrap(), 1);
}
