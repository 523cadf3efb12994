//! A first check that the harness starts the binary and both front ends reply.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::frontend::{Frontend, token};
use common::{TestServer, unique};
use serde_json::json;

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
    let config = json!({ "counter_type": "best_effort" });
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

#[tokio::test]
async fn batch_item_errors_stay_in_place() {
    let server = TestServer::start();
    let http = server.http_client();
    let url = format!("{}/v1/namespaces/default/add-batch", server.http);
    let body = r#"{"items": [
        {"counter": "batch-a", "delta": 1},
        {"counter": "batch-b", "delta": "x"},
        {"counter": "", "delta": 1},
        {"counter": "batch-a", "delta": 2}
    ]}"#;
    let (status, reply) = http
        .raw(reqwest::Method::POST, &url, Some(body.into()))
        .await;
    assert_eq!(status, 200, "{reply}");

    let results = reply["results"].as_array().expect("results");
    assert_eq!(results.len(), 4);
    assert!(results[0]["event_id"].is_u64(), "{reply}");
    // A malformed item (read by the HTTP front end) and an invalid name (checked by the
    // service) both name their field with the item's index.
    for (index, field) in [(1, "items[1].delta"), (2, "items[2].counter")] {
        let error = &results[index]["error"];
        assert_eq!(error["code"], "invalid_argument", "{reply}");
        let message = error["message"].as_str().expect("message");
        assert!(
            message.starts_with(&format!("invalid {field}: ")),
            "{reply}"
        );
    }
    assert!(results[3]["event_id"].is_u64(), "{reply}");

    let mut http = server.http_client();
    assert_eq!(http.get("default", "batch-a").await.unwrap(), 3);
    let missing = http.get("default", "batch-b").await.unwrap_err();
    assert_eq!(missing.class, common::frontend::ErrorClass::NotFound);
}

/// A listing's query takes `after` and `limit` (1 to 1000), each at most once. Anything else
/// gets 400 with the parameter and the rule.
#[tokio::test]
async fn list_rejects_bad_query() {
    let server = TestServer::start();
    let http = server.http_client();
    let cases = [
        (
            "limit=abc",
            "invalid limit: must be an integer from 1 to 1000, got \"abc\"",
        ),
        (
            "limit=-1",
            "invalid limit: must be an integer from 1 to 1000, got \"-1\"",
        ),
        (
            "limit=",
            "invalid limit: must be an integer from 1 to 1000, got \"\"",
        ),
        (
            "limit=%2B3",
            "invalid limit: must be an integer from 1 to 1000, got \"+3\"",
        ),
        (
            "limit=03",
            "invalid limit: must be an integer from 1 to 1000, got \"03\"",
        ),
        (
            "limit=0",
            "invalid limit: must be an integer from 1 to 1000, got 0",
        ),
        (
            "limit=1001",
            "invalid limit: must be an integer from 1 to 1000, got 1001",
        ),
        (
            "limit=5&limit=6",
            "invalid limit: must be given at most once",
        ),
        (
            "after=a&after=b",
            "invalid after: must be given at most once",
        ),
        (
            "limt=5",
            "invalid query: unknown parameter \"limt\"; the known parameters are after, limit",
        ),
    ];
    for (query, expected) in cases {
        let url = format!("{}/v1/namespaces/default/counters?{query}", server.http);
        let (status, body) = http.raw(reqwest::Method::GET, &url, None).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_argument", "{query}: {body}");
        assert_eq!(body["error"]["message"], expected, "{query}: {body}");
    }
}

/// `limit` and `next_after` page through the names over HTTP and gRPC alike, in durable and
/// best-effort namespaces. gRPC takes 0 as the default, since proto3 cannot tell it from an
/// unset field, and rejects a limit above 1000.
#[tokio::test]
async fn list_pages_with_limit() {
    let server = TestServer::start();
    let mut http = server.http_client();
    let mut grpc = server.grpc_client().await;
    let config = json!({ "counter_type": "best_effort" });
    http.put_namespace("fast", config).await.unwrap();
    let names = ["a", "b", "c", "d", "e"];
    for namespace in ["default", "fast"] {
        for name in names {
            http.add(namespace, name, 1, None).await.unwrap();
        }
        let pages = http_pages(&server, namespace, 2).await;
        assert_eq!(
            pages,
            [json!(["a", "b"]), json!(["c", "d"]), json!(["e"])],
            "{namespace}"
        );
        // A page that ends exactly at the last name is the last page.
        assert_eq!(http_pages(&server, namespace, 5).await, [json!(names)]);
    }

    let request = |limit| tally_server::proto::ListCountersRequest {
        namespace: "default".into(),
        after: Some("a".into()),
        limit,
    };
    let listed = grpc.inner().list_counters(request(3)).await.unwrap();
    let listed = listed.into_inner();
    assert_eq!(listed.counters, ["b", "c", "d"]);
    assert_eq!(listed.next_after.as_deref(), Some("d"));
    let listed = grpc.inner().list_counters(request(0)).await.unwrap();
    let listed = listed.into_inner();
    assert_eq!(listed.counters, ["b", "c", "d", "e"]);
    assert_eq!(listed.next_after, None);
    let status = grpc.inner().list_counters(request(1001)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "invalid limit: must be an integer from 1 to 1000, got 1001"
    );
}

/// Lists a namespace over HTTP `limit` names at a time, following `next_after` until the page
/// that has none, and returns the pages' `counters`.
async fn http_pages(server: &TestServer, namespace: &str, limit: usize) -> Vec<serde_json::Value> {
    const MAX_PAGES: usize = 100;
    let http = server.http_client();
    let base = format!("{}/v1/namespaces/{namespace}/counters", server.http);
    let mut url = format!("{base}?limit={limit}");
    let mut pages = Vec::new();
    loop {
        let (status, page) = http.raw(reqwest::Method::GET, &url, None).await;
        assert_eq!(status, 200, "{page}");
        pages.push(page["counters"].clone());
        let Some(next) = page["next_after"].as_str() else {
            assert!(page["next_after"].is_null(), "{page}");
            return pages;
        };
        assert!(pages.len() < MAX_PAGES, "the pages do not end: {pages:?}");
        url = format!("{base}?limit={limit}&after={next}");
    }
}
