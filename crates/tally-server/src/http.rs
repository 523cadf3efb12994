//! The HTTP/JSON front end (axum).
//!
//! Bodies are parsed by hand from `serde_json::Value` so that every error names its field, and
//! unknown fields are rejected so that a typo never passes silently. Integers are plain JSON
//! numbers and keep all 64 bits. A delta may also be a JSON string of decimal digits, for
//! clients whose JSON numbers are doubles.

pub mod body;
mod openapi;

use crate::rollup::RollupReport;
use crate::service::{NamespaceView, invalid_list_limit};
use crate::writer::ChangeOutcome;
use crate::{Service, ServiceError};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use body::{parse_add_body, parse_batch_body, parse_clear_body, parse_namespace_patch};
use serde_json::{Value, json};
use tally_core::{ValidationError, parse_delta};
use tracing::warn;

/// Maximum size of a request body: a full batch of 1000 items with long names fits.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Maximum length of a request URI; longer ones get 414 before any routing.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Builds the router with every route of the public API.
pub fn router(service: Service) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi_document))
        .route("/v1/namespaces", get(list_namespaces))
        .route(
            "/v1/namespaces/{namespace}",
            get(get_namespace).put(put_namespace),
        )
        .route("/v1/namespaces/{namespace}/counters", get(list_counters))
        .route(
            "/v1/namespaces/{namespace}/counters/{counter}",
            get(get_count),
        )
        .route(
            "/v1/namespaces/{namespace}/counters/{counter}/add",
            post(add_count),
        )
        .route(
            "/v1/namespaces/{namespace}/counters/{counter}/add-and-get",
            post(add_and_get_count),
        )
        .route(
            "/v1/namespaces/{namespace}/counters/{counter}/clear",
            post(clear_count),
        )
        .route("/v1/namespaces/{namespace}/add-batch", post(add_batch))
        .route("/v1/admin/rollup", post(roll_up))
        .fallback(not_found_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(reject_long_uri))
        .with_state(service)
}

/// An error as the HTTP API returns it.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

pub fn status_of(error: &ServiceError) -> StatusCode {
    match error {
        ServiceError::Invalid(_) | ServiceError::OutOfRange(_) => StatusCode::BAD_REQUEST,
        ServiceError::NamespaceNotFound(_) | ServiceError::CounterNotFound { .. } => {
            StatusCode::NOT_FOUND
        }
        ServiceError::TokenConflict { .. } => StatusCode::CONFLICT,
        ServiceError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        ServiceError::Overloaded => StatusCode::TOO_MANY_REQUESTS,
        ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        Self::new(status_of(&error), error.code(), error.to_string())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            format!(
                "invalid path: {} (names must be valid UTF-8 after percent-decoding)",
                rejection.body_text()
            ),
        )
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                status,
                "too_large",
                format!("request body is larger than the limit of {MAX_BODY_BYTES} bytes"),
            )
        } else {
            Self::new(
                status,
                "invalid_argument",
                format!("invalid request body: {}", rejection.body_text()),
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            warn!(status = self.status.as_u16(), code = self.code, message = %self.message, "request failed");
        }
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// Builds the response to a connection past the HTTP front end's connection limit: 429
/// `overloaded`, as for a full write queue.
pub(crate) fn too_many_connections(max_connections: usize) -> Response {
    let message = format!(
        "server overloaded: {max_connections} HTTP connections are open, the maximum. Retry \
         later or reuse a connection"
    );
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", message).into_response()
}

fn error_body(error: &ServiceError) -> Value {
    json!({ "error": { "code": error.code(), "message": error.to_string() } })
}

fn change_body(outcome: &ChangeOutcome) -> Value {
    json!({ "event_id": outcome.event_id, "duplicate": outcome.duplicate })
}

fn namespace_body(view: &NamespaceView) -> Value {
    let config = &view.config;
    json!({
        "name": view.name,
        "counter_type": config.counter_type.as_str(),
        "accept_limit_seconds": config.accept_limit_seconds,
        "max_clock_skew_seconds": config.max_clock_skew_seconds,
        "event_retention_seconds": config.event_retention_seconds,
        "idempotency_window_seconds": config.idempotency_window_seconds,
    })
}

async fn reject_long_uri(request: Request, next: Next) -> Response {
    let length = request.uri().to_string().len();
    if length > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "too_large",
            format!("request URI is {length} bytes, the limit is {MAX_URI_BYTES}"),
        )
        .into_response();
    }
    next.run(request).await
}

async fn not_found_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see /openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method; see /openapi.json",
    )
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "serving" }))
}

async fn openapi_document() -> Json<Value> {
    Json(openapi::document())
}

async fn list_namespaces(State(service): State<Service>) -> Json<Value> {
    let namespaces: Vec<Value> = service
        .list_namespaces()
        .iter()
        .map(namespace_body)
        .collect();
    Json(json!({ "namespaces": namespaces }))
}

async fn get_namespace(
    State(service): State<Service>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let Path(namespace) = path?;
    Ok(Json(namespace_body(&service.get_namespace(&namespace)?)).into_response())
}

async fn put_namespace(
    State(service): State<Service>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let Path(namespace) = path?;
    let patch = parse_namespace_patch(&body?)?;
    let view = service.put_namespace(&namespace, &patch).await?;
    Ok(Json(namespace_body(&view)).into_response())
}

/// The query of a counter listing.
#[derive(Default)]
struct ListQuery {
    after: Option<String>,
    limit: Option<u64>,
}

impl ListQuery {
    /// Reads `after` and `limit`, each at most once, and rejects any other parameter.
    fn parse(pairs: Vec<(String, String)>) -> Result<Self, ServiceError> {
        let mut query = Self::default();
        for (name, value) in pairs {
            match name.as_str() {
                "after" if query.after.is_none() => query.after = Some(value),
                "limit" if query.limit.is_none() => query.limit = Some(parse_limit(&value)?),
                "after" => {
                    return Err(ServiceError::invalid("after", "must be given at most once"));
                }
                "limit" => {
                    return Err(ServiceError::invalid("limit", "must be given at most once"));
                }
                _ => {
                    return Err(ServiceError::invalid(
                        "query",
                        format!(
                            "unknown parameter {name:?}; the known parameters are after, limit"
                        ),
                    ));
                }
            }
        }
        Ok(query)
    }
}

/// Reads a listing limit written as a delta is, without a sign: decimal digits with no
/// leading zeros. Whether it lies from 1 to 1000 is the service's check.
fn parse_limit(value: &str) -> Result<u64, ValidationError> {
    parse_delta(value.as_bytes())
        .ok()
        .and_then(|limit| u64::try_from(limit).ok())
        .ok_or_else(|| invalid_list_limit(format!("{value:?}")))
}

async fn list_counters(
    State(service): State<Service>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult {
    let Path(namespace) = path?;
    let Query(pairs) = query.map_err(|rejection| {
        ServiceError::invalid(
            "query",
            format!("cannot be decoded: {}", rejection.body_text()),
        )
    })?;
    let query = ListQuery::parse(pairs)?;
    let page = service
        .list_counters(&namespace, query.after.as_deref(), query.limit)
        .await?;
    Ok(Json(json!({ "counters": page.counters, "next_after": page.next_after })).into_response())
}

async fn get_count(
    State(service): State<Service>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let Path((namespace, counter)) = path?;
    let value = service.get(&namespace, &counter)?;
    Ok(Json(json!({ "namespace": namespace, "counter": counter, "value": value })).into_response())
}

/// Parses and applies one add; shared by `add` and `add-and-get`, which differ in the reply.
async fn apply_add(
    service: &Service,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<ChangeOutcome, ApiError> {
    let Path((namespace, counter)) = path?;
    let (delta, token) = parse_add_body(&body?)?;
    Ok(service.add(&namespace, &counter, delta, token).await?)
}

async fn add_count(
    State(service): State<Service>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let outcome = apply_add(&service, path, body).await?;
    Ok(Json(change_body(&outcome)).into_response())
}

async fn add_and_get_count(
    State(service): State<Service>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let outcome = apply_add(&service, path, body).await?;
    let body = json!({ "value": outcome.value, "event_id": outcome.event_id, "duplicate": outcome.duplicate });
    Ok(Json(body).into_response())
}

async fn clear_count(
    State(service): State<Service>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let Path((namespace, counter)) = path?;
    let token = parse_clear_body(&body?)?;
    let outcome = service.clear(&namespace, &counter, token).await?;
    Ok(Json(change_body(&outcome)).into_response())
}

async fn add_batch(
    State(service): State<Service>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let Path(namespace) = path?;
    let parsed = parse_batch_body(&body?)?;

    // Apply the well-formed items; the malformed ones keep their error in their place.
    // The outcomes come back in the order of the valid items.
    let valid: Vec<_> = parsed
        .iter()
        .filter_map(|item| item.as_ref().ok().cloned())
        .collect();
    let mut outcomes = service.add_batch(&namespace, valid).await?.into_iter();
    let results: Vec<Value> = parsed
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            Err(error) => error_body(error),
            Ok(_) => match outcomes.next() {
                Some(Ok(outcome)) => change_body(&outcome),
                Some(Err(error)) => error_body(&error.in_batch_item(index)),
                None => error_body(&ServiceError::Unavailable("missing outcome".into())),
            },
        })
        .collect();
    Ok(Json(json!({ "results": results })).into_response())
}

async fn roll_up(State(service): State<Service>) -> ApiResult {
    let report: RollupReport = service.roll_up_now().await?;
    Ok(Json(json!({
        "num_namespaces": report.num_namespaces,
        "num_events": report.num_events,
        "num_checkpoints": report.num_checkpoints,
        "num_buckets_dropped": report.num_buckets_dropped,
        "num_tokens_expired": report.num_tokens_expired,
    }))
    .into_response())
}
