//! The gRPC front end (tonic), package `tally.v1`. Status codes follow the table at the top of
//! `proto/tally/v1/tally.proto`.

use crate::proto::{self, tally_server::Tally};
use crate::service::{BatchItem, NamespaceView, TokenInput};
use crate::writer::ChangeOutcome;
use crate::{Service, ServiceError};
use tally_core::{CounterType, NamespaceConfigPatch};
use tonic::{Code, Request, Response, Status};
use tracing::warn;

/// Maximum size of a decoded gRPC message; larger ones get `RESOURCE_EXHAUSTED`.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

pub struct GrpcService {
    service: Service,
}

impl GrpcService {
    pub fn new(service: Service) -> Self {
        Self { service }
    }

    async fn add(&self, request: proto::AddCountRequest) -> Result<ChangeOutcome, Status> {
        let token = token_input(request.idempotency_token);
        self.service
            .add(&request.namespace, &request.counter, request.delta, token)
            .await
            .map_err(status)
    }

    /// Wraps this service in the generated tonic server with Tally's size limits.
    pub fn into_server(self) -> proto::tally_server::TallyServer<Self> {
        proto::tally_server::TallyServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// Rewrites tonic's status for an oversized request message to `RESOURCE_EXHAUSTED`.
///
/// tonic 0.14 rejects a message over `max_decoding_message_size` with `OUT_OF_RANGE` before any
/// handler runs (having read only the length prefix), but Tally uses `OUT_OF_RANGE` for values
/// that would leave the 64-bit range. The rejection is a trailers-only response, so the status is
/// in the headers, and tonic's message text identifies it.
pub fn size_limit_status<B>(
    mut response: tonic::codegen::http::Response<B>,
) -> tonic::codegen::http::Response<B> {
    let headers = response.headers_mut();
    let is_out_of_range = headers
        .get("grpc-status")
        .is_some_and(|status| status == "11");
    let is_size_limit = headers
        .get("grpc-message")
        .and_then(|message| message.to_str().ok())
        .is_some_and(|message| {
            message.contains("message%20length%20too%20large")
                || message.contains("message length too large")
        });
    if is_out_of_range && is_size_limit {
        headers.insert(
            "grpc-status",
            tonic::codegen::http::HeaderValue::from_static("8"),
        );
    }
    response
}

pub fn code_of(error: &ServiceError) -> Code {
    match error {
        ServiceError::Invalid(_) => Code::InvalidArgument,
        ServiceError::OutOfRange(_) => Code::OutOfRange,
        ServiceError::NamespaceNotFound(_) | ServiceError::CounterNotFound { .. } => Code::NotFound,
        ServiceError::TokenConflict { .. } => Code::AlreadyExists,
        ServiceError::TooLarge(_) | ServiceError::Overloaded => Code::ResourceExhausted,
        ServiceError::Unavailable(_) => Code::Unavailable,
    }
}

fn status(error: ServiceError) -> Status {
    if matches!(error, ServiceError::Unavailable(_)) {
        warn!(%error, "gRPC request failed");
    }
    Status::new(code_of(&error), error.to_string())
}

fn token_input(token: Option<proto::IdempotencyToken>) -> Option<TokenInput> {
    token.map(|token| TokenInput {
        token: token.token,
        generation_time: Some(token.generation_time).filter(|text| !text.is_empty()),
    })
}

fn change_response(outcome: ChangeOutcome) -> proto::AddCountResponse {
    proto::AddCountResponse {
        event_id: outcome.event_id,
        duplicate: outcome.duplicate,
    }
}

fn counter_type_to_proto(counter_type: CounterType) -> proto::CounterType {
    match counter_type {
        CounterType::Eventual => proto::CounterType::Eventual,
        CounterType::Accurate => proto::CounterType::Accurate,
        CounterType::BestEffort => proto::CounterType::BestEffort,
    }
}

fn namespace_message(view: NamespaceView) -> proto::Namespace {
    let config = view.config;
    proto::Namespace {
        name: view.name,
        config: Some(proto::NamespaceConfig {
            counter_type: counter_type_to_proto(config.counter_type) as i32,
            accept_limit_seconds: Some(config.accept_limit_seconds),
            max_clock_skew_seconds: Some(config.max_clock_skew_seconds),
            event_retention_seconds: Some(config.event_retention_seconds),
            idempotency_window_seconds: Some(config.idempotency_window_seconds),
        }),
    }
}

fn config_patch(
    config: Option<proto::NamespaceConfig>,
) -> Result<NamespaceConfigPatch, ServiceError> {
    let Some(config) = config else {
        return Ok(NamespaceConfigPatch::default());
    };
    let counter_type = match proto::CounterType::try_from(config.counter_type) {
        Ok(proto::CounterType::Unspecified) => None,
        Ok(proto::CounterType::Eventual) => Some(CounterType::Eventual),
        Ok(proto::CounterType::Accurate) => Some(CounterType::Accurate),
        Ok(proto::CounterType::BestEffort) => Some(CounterType::BestEffort),
        Err(_) => {
            return Err(ServiceError::invalid(
                "counter_type",
                format!("unknown counter type value {}", config.counter_type),
            ));
        }
    };
    Ok(NamespaceConfigPatch {
        counter_type,
        accept_limit_seconds: config.accept_limit_seconds,
        max_clock_skew_seconds: config.max_clock_skew_seconds,
        event_retention_seconds: config.event_retention_seconds,
        idempotency_window_seconds: config.idempotency_window_seconds,
    })
}

#[tonic::async_trait]
impl Tally for GrpcService {
    async fn put_namespace(
        &self,
        request: Request<proto::PutNamespaceRequest>,
    ) -> Result<Response<proto::Namespace>, Status> {
        let request = request.into_inner();
        let patch = config_patch(request.config).map_err(status)?;
        let view = self
            .service
            .put_namespace(&request.name, &patch)
            .await
            .map_err(status)?;
        Ok(Response::new(namespace_message(view)))
    }

    async fn get_namespace(
        &self,
        request: Request<proto::GetNamespaceRequest>,
    ) -> Result<Response<proto::Namespace>, Status> {
        let view = self
            .service
            .get_namespace(&request.into_inner().name)
            .map_err(status)?;
        Ok(Response::new(namespace_message(view)))
    }

    async fn list_namespaces(
        &self,
        _request: Request<proto::ListNamespacesRequest>,
    ) -> Result<Response<proto::ListNamespacesResponse>, Status> {
        let namespaces = self
            .service
            .list_namespaces()
            .into_iter()
            .map(namespace_message)
            .collect();
        Ok(Response::new(proto::ListNamespacesResponse { namespaces }))
    }

    async fn list_counters(
        &self,
        request: Request<proto::ListCountersRequest>,
    ) -> Result<Response<proto::ListCountersResponse>, Status> {
        let request = request.into_inner();
        let page = self
            .service
            .list_counters(
                &request.namespace,
                request.after.as_deref(),
                // proto3 cannot tell an unset limit from 0, so 0 means the default.
                (request.limit != 0).then_some(u64::from(request.limit)),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ListCountersResponse {
            counters: page.counters,
            next_after: page.next_after,
        }))
    }

    async fn add_count(
        &self,
        request: Request<proto::AddCountRequest>,
    ) -> Result<Response<proto::AddCountResponse>, Status> {
        let outcome = self.add(request.into_inner()).await?;
        Ok(Response::new(change_response(outcome)))
    }

    async fn add_and_get_count(
        &self,
        request: Request<proto::AddCountRequest>,
    ) -> Result<Response<proto::CountResponse>, Status> {
        let outcome = self.add(request.into_inner()).await?;
        Ok(Response::new(proto::CountResponse {
            value: outcome.value,
            event_id: outcome.event_id,
            duplicate: outcome.duplicate,
        }))
    }

    async fn get_count(
        &self,
        request: Request<proto::GetCountRequest>,
    ) -> Result<Response<proto::CountResponse>, Status> {
        let request = request.into_inner();
        let value = self
            .service
            .get(&request.namespace, &request.counter)
            .map_err(status)?;
        Ok(Response::new(proto::CountResponse {
            value,
            event_id: 0,
            duplicate: false,
        }))
    }

    async fn clear_count(
        &self,
        request: Request<proto::ClearCountRequest>,
    ) -> Result<Response<proto::ClearCountResponse>, Status> {
        let request = request.into_inner();
        let token = token_input(request.idempotency_token);
        let outcome = self
            .service
            .clear(&request.namespace, &request.counter, token)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ClearCountResponse {
            event_id: outcome.event_id,
            duplicate: outcome.duplicate,
        }))
    }

    async fn add_batch(
        &self,
        request: Request<proto::AddBatchRequest>,
    ) -> Result<Response<proto::AddBatchResponse>, Status> {
        let request = request.into_inner();
        let items = request
            .items
            .into_iter()
            .map(|item| BatchItem {
                counter: item.counter,
                delta: item.delta,
                token: token_input(item.idempotency_token),
            })
            .collect();
        let outcomes = self
            .service
            .add_batch(&request.namespace, items)
            .await
            .map_err(status)?;
        let results = outcomes
            .into_iter()
            .enumerate()
            .map(|(index, outcome)| proto::AddBatchResult {
                result: Some(match outcome {
                    Ok(outcome) => proto::add_batch_result::Result::Ok(change_response(outcome)),
                    Err(error) => {
                        let error = error.in_batch_item(index);
                        proto::add_batch_result::Result::Error(proto::ItemError {
                            code: error.code().to_owned(),
                            message: error.to_string(),
                        })
                    }
                }),
            })
            .collect();
        Ok(Response::new(proto::AddBatchResponse { results }))
    }
}
