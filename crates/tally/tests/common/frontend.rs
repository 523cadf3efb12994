//! One client interface over both front ends, so that each conformance case runs unchanged on
//! HTTP and on gRPC. Errors are reduced to their class, which both front ends must agree on.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tally_server::proto;
use tally_server::proto::tally_client::TallyClient;
use tonic::transport::Channel;

/// The class of an error, as every front end must report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    Invalid,
    OutOfRange,
    NotFound,
    Conflict,
    TooLarge,
    Overloaded,
    Unavailable,
    Other(String),
}

/// An error with its class and the message the client saw.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub class: ErrorClass,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub event_id: u64,
    pub duplicate: bool,
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A token as a test sends it.
#[derive(Debug, Clone)]
pub struct Token {
    pub token: String,
    pub generation_time: Option<String>,
}

pub fn token(text: &str) -> Option<Token> {
    Some(Token {
        token: text.to_owned(),
        generation_time: None,
    })
}

pub trait Frontend: Send + Sync {
    fn name(&self) -> &'static str;
    async fn add(
        &mut self,
        namespace: &str,
        counter: &str,
        delta: i64,
        token: Option<Token>,
    ) -> ApiResult<Change>;
    async fn add_and_get(
        &mut self,
        namespace: &str,
        counter: &str,
        delta: i64,
        token: Option<Token>,
    ) -> ApiResult<i64>;
    async fn get(&mut self, namespace: &str, counter: &str) -> ApiResult<i64>;
    async fn clear(
        &mut self,
        namespace: &str,
        counter: &str,
        token: Option<Token>,
    ) -> ApiResult<Change>;
    async fn put_namespace(&mut self, namespace: &str, config: Value) -> ApiResult<Value>;
    async fn list_counters(&mut self, namespace: &str) -> ApiResult<Vec<String>>;
}

// ---- HTTP ----

pub struct Http {
    base: String,
    client: reqwest::Client,
}

/// Percent-encodes a path segment.
pub fn segment(name: &str) -> String {
    name.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

fn http_class(status: u16) -> ErrorClass {
    match status {
        400 => ErrorClass::Invalid,
        404 => ErrorClass::NotFound,
        409 => ErrorClass::Conflict,
        413 | 414 => ErrorClass::TooLarge,
        429 => ErrorClass::Overloaded,
        503 => ErrorClass::Unavailable,
        other => ErrorClass::Other(format!("HTTP {other}")),
    }
}

impl Http {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            client: reqwest::Client::new(),
        }
    }

    pub fn counter_url(&self, namespace: &str, counter: &str) -> String {
        format!(
            "{}/v1/namespaces/{}/counters/{}",
            self.base,
            segment(namespace),
            segment(counter)
        )
    }

    /// Sends a request with a raw body and returns the status and the JSON body.
    pub async fn raw(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<String>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, url);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.expect("HTTP request failed");
        let status = response.status().as_u16();
        let text = response.text().await.expect("cannot read the body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<Value>,
    ) -> ApiResult<Value> {
        let (status, body) = self.raw(method, url, body.map(|b| b.to_string())).await;
        if status == 200 {
            return Ok(body);
        }
        let code = body["error"]["code"].as_str().unwrap_or_default();
        let class = match (status, code) {
            (400, "out_of_range") => ErrorClass::OutOfRange,
            (status, _) => http_class(status),
        };
        let message = body["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| body.to_string());
        Err(ApiError { class, message })
    }

    fn token_json(token: Option<Token>) -> Value {
        match token {
            None => Value::Null,
            Some(token) => {
                json!({ "token": token.token, "generation_time": token.generation_time })
            }
        }
    }
}

fn change_of(body: &Value) -> Change {
    Change {
        event_id: body["event_id"].as_u64().expect("event_id"),
        duplicate: body["duplicate"].as_bool().expect("duplicate"),
    }
}

impl Frontend for Http {
    fn name(&self) -> &'static str {
        "http"
    }

    async fn add(
        &mut self,
        namespace: &str,
        counter: &str,
        delta: i64,
        token: Option<Token>,
    ) -> ApiResult<Change> {
        let url = format!("{}/add", self.counter_url(namespace, counter));
        let body = json!({ "delta": delta, "idempotency_token": Self::token_json(token) });
        Ok(change_of(
            &self.call(reqwest::Method::POST, &url, Some(body)).await?,
        ))
    }

    async fn add_and_get(
        &mut self,
        namespace: &str,
        counter: &str,
        delta: i64,
        token: Option<Token>,
    ) -> ApiResult<i64> {
        let url = format!("{}/add-and-get", self.counter_url(namespace, counter));
        let body = json!({ "delta": delta, "idempotency_token": Self::token_json(token) });
        Ok(
            self.call(reqwest::Method::POST, &url, Some(body)).await?["value"]
                .as_i64()
                .expect("value"),
        )
    }

    async fn get(&mut self, namespace: &str, counter: &str) -> ApiResult<i64> {
        let url = self.counter_url(namespace, counter);
        Ok(self.call(reqwest::Method::GET, &url, None).await?["value"]
            .as_i64()
            .expect("value"))
    }

    async fn clear(
        &mut self,
        namespace: &str,
        counter: &str,
        token: Option<Token>,
    ) -> ApiResult<Change> {
        let url = format!("{}/clear", self.counter_url(namespace, counter));
        let body = json!({ "idempotency_token": Self::token_json(token) });
        Ok(change_of(
            &self.call(reqwest::Method::POST, &url, Some(body)).await?,
        ))
    }

    async fn put_namespace(&mut self, namespace: &str, config: Value) -> ApiResult<Value> {
        let url = format!("{}/v1/namespaces/{}", self.base, segment(namespace));
        self.call(reqwest::Method::PUT, &url, Some(config)).await
    }

    async fn list_counters(&mut self, namespace: &str) -> ApiResult<Vec<String>> {
        let url = format!(
            "{}/v1/namespaces/{}/counters",
            self.base,
            segment(namespace)
        );
        let body = self.call(reqwest::Method::GET, &url, None).await?;
        Ok(body["counters"]
            .as_array()
            .expect("counters")
            .iter()
            .map(|v| v.as_str().expect("name").to_owned())
            .collect())
    }
}

// ---- gRPC ----

/// A gRPC client; clones share one HTTP/2 connection.
#[derive(Clone)]
pub struct Grpc {
    client: TallyClient<Channel>,
}

fn grpc_error(status: tonic::Status) -> ApiError {
    let class = match status.code() {
        tonic::Code::InvalidArgument => ErrorClass::Invalid,
        tonic::Code::OutOfRange => ErrorClass::OutOfRange,
        tonic::Code::NotFound => ErrorClass::NotFound,
        tonic::Code::AlreadyExists => ErrorClass::Conflict,
        tonic::Code::ResourceExhausted => {
            if status.message().contains("overloaded") {
                ErrorClass::Overloaded
            } else {
                ErrorClass::TooLarge
            }
        }
        tonic::Code::Unavailable => ErrorClass::Unavailable,
        other => ErrorClass::Other(format!("gRPC {other:?}")),
    };
    ApiError {
        class,
        message: status.message().to_owned(),
    }
}

fn proto_token(token: Option<Token>) -> Option<proto::IdempotencyToken> {
    token.map(|token| proto::IdempotencyToken {
        token: token.token,
        generation_time: token.generation_time.unwrap_or_default(),
    })
}

impl Grpc {
    pub async fn connect(address: &str) -> Self {
        let client = TallyClient::connect(address.to_owned())
            .await
            .expect("cannot connect over gRPC");
        Self {
            client: client
                .max_decoding_message_size(64 * 1024 * 1024)
                .max_encoding_message_size(64 * 1024 * 1024),
        }
    }

    pub fn inner(&mut self) -> &mut TallyClient<Channel> {
        &mut self.client
    }
}

impl Frontend for Grpc {
    fn name(&self) -> &'static str {
        "grpc"
    }

    async fn add(
        &mut self,
        namespace: &str,
        counter: &str,
        delta: i64,
        token: Option<Token>,
    ) -> ApiResult<Change> {
        let request = proto::AddCountRequest {
            namespace: namespace.to_owned(),
            counter: counter.to_owned(),
            delta,
            idempotency_token: proto_token(token),
        };
        let reply = self
            .client
            .add_count(request)
            .await
            .map_err(grpc_error)?
            .into_inner();
        Ok(Change {
            event_id: reply.event_id,
            duplicate: reply.duplicate,
        })
    }

    async fn add_and_get(
        &mut self,
        namespace: &str,
        counter: &str,
        delta: i64,
        token: Option<Token>,
    ) -> ApiResult<i64> {
        let request = proto::AddCountRequest {
            namespace: namespace.to_owned(),
            counter: counter.to_owned(),
            delta,
            idempotency_token: proto_token(token),
        };
        Ok(self
            .client
            .add_and_get_count(request)
            .await
            .map_err(grpc_error)?
            .into_inner()
            .value)
    }

    async fn get(&mut self, namespace: &str, counter: &str) -> ApiResult<i64> {
        let request = proto::GetCountRequest {
            namespace: namespace.to_owned(),
            counter: counter.to_owned(),
        };
        Ok(self
            .client
            .get_count(request)
            .await
            .map_err(grpc_error)?
            .into_inner()
            .value)
    }

    async fn clear(
        &mut self,
        namespace: &str,
        counter: &str,
        token: Option<Token>,
    ) -> ApiResult<Change> {
        let request = proto::ClearCountRequest {
            namespace: namespace.to_owned(),
            counter: counter.to_owned(),
            idempotency_token: proto_token(token),
        };
        let reply = self
            .client
            .clear_count(request)
            .await
            .map_err(grpc_error)?
            .into_inner();
        Ok(Change {
            event_id: reply.event_id,
            duplicate: reply.duplicate,
        })
    }

    async fn put_namespace(&mut self, namespace: &str, config: Value) -> ApiResult<Value> {
        let counter_type = match config["counter_type"].as_str() {
            Some("eventual") => proto::CounterType::Eventual,
            Some("accurate") => proto::CounterType::Accurate,
            Some("best_effort") => proto::CounterType::BestEffort,
            _ => proto::CounterType::Unspecified,
        };
        let request = proto::PutNamespaceRequest {
            name: namespace.to_owned(),
            config: Some(proto::NamespaceConfig {
                counter_type: counter_type as i32,
                accept_limit_seconds: config["accept_limit_seconds"].as_i64(),
                max_clock_skew_seconds: config["max_clock_skew_seconds"].as_i64(),
                event_retention_seconds: config["event_retention_seconds"].as_i64(),
                idempotency_window_seconds: config["idempotency_window_seconds"].as_i64(),
            }),
        };
        let reply = self
            .client
            .put_namespace(request)
            .await
            .map_err(grpc_error)?
            .into_inner();
        Ok(json!({ "name": reply.name }))
    }

    async fn list_counters(&mut self, namespace: &str) -> ApiResult<Vec<String>> {
        let request = proto::ListCountersRequest {
            namespace: namespace.to_owned(),
            after: None,
            limit: 0,
        };
        Ok(self
            .client
            .list_counters(request)
            .await
            .map_err(grpc_error)?
            .into_inner()
            .counters)
    }
}
