//! One connection per worker to the system under load, and how each operation is sent.

use super::report::Operation;
use super::{BenchArgs, Target};
use crate::client::segment;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tally_server::proto;
use tally_server::proto::tally_client::TallyClient;

/// One operation of a request.
pub struct Request {
    pub key: String,
    pub delta: i64,
    pub token: Option<String>,
}

pub enum Connection {
    Http {
        client: reqwest::Client,
        base: String,
        namespace: String,
    },
    Grpc {
        client: TallyClient<tonic::transport::Channel>,
        namespace: String,
    },
    Resp {
        connection: redis::aio::MultiplexedConnection,
        tally: bool,
    },
}

impl Connection {
    pub async fn open(args: &BenchArgs) -> Result<Self> {
        match args.target {
            Target::Http => Ok(Connection::Http {
                // One pooled connection per worker, so --connections is the number of sockets.
                client: reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()?,
                base: args.address.trim_end_matches('/').to_owned(),
                namespace: segment(&args.namespace),
            }),
            Target::Grpc => {
                let client = TallyClient::connect(args.address.clone())
                    .await
                    .with_context(|| format!("cannot connect to {} over gRPC", args.address))?;
                Ok(Connection::Grpc {
                    client,
                    namespace: args.namespace.clone(),
                })
            }
            Target::Resp | Target::Redis => {
                let client = redis::Client::open(format!("redis://{}/", args.address))?;
                // redis-rs gives up on a reply after 500 ms by default; a load generator must
                // record a slow reply as latency, not as a failure.
                let mut connection = client
                    .get_multiplexed_async_connection()
                    .await
                    .with_context(|| format!("cannot connect to {}", args.address))?;
                connection.set_response_timeout(std::time::Duration::from_secs(60));
                let tally = args.target == Target::Resp;
                if tally && args.namespace != "default" {
                    redis::cmd("TALLY.NAMESPACE")
                        .arg(&args.namespace)
                        .query_async::<()>(&mut connection)
                        .await
                        .context("TALLY.NAMESPACE failed")?;
                }
                Ok(Connection::Resp { connection, tally })
            }
        }
    }

    /// Sends one round trip carrying `requests`.
    pub async fn send(&mut self, operation: Operation, requests: &[Request]) -> Result<()> {
        match self {
            Connection::Http {
                client,
                base,
                namespace,
            } => send_http(client, base, namespace, operation, requests).await,
            Connection::Grpc { client, namespace } => {
                send_grpc(client, namespace, operation, requests).await
            }
            Connection::Resp { connection, tally } => {
                send_resp(connection, *tally, operation, requests).await
            }
        }
    }
}

fn token_json(request: &Request) -> Value {
    match &request.token {
        Some(token) => json!({ "token": token }),
        None => Value::Null,
    }
}

async fn send_http(
    client: &reqwest::Client,
    base: &str,
    namespace: &str,
    operation: Operation,
    requests: &[Request],
) -> Result<()> {
    if operation == Operation::Add && requests.len() > 1 {
        let items: Vec<Value> = requests
            .iter()
            .map(|r| json!({ "counter": r.key, "delta": r.delta, "idempotency_token": token_json(r) }))
            .collect();
        let url = format!("{base}/v1/namespaces/{namespace}/add-batch");
        let reply: Value = check(
            client
                .post(url)
                .json(&json!({ "items": items }))
                .send()
                .await?,
        )
        .await?;
        if let Some(failed) = reply["results"]
            .as_array()
            .and_then(|results| results.iter().find(|r| r.get("error").is_some()))
        {
            bail!("batch item failed: {failed}");
        }
        return Ok(());
    }
    for request in requests {
        let counter_url = format!(
            "{base}/v1/namespaces/{namespace}/counters/{}",
            segment(&request.key)
        );
        let body = json!({ "delta": request.delta, "idempotency_token": token_json(request) });
        let response = match operation {
            Operation::Add => {
                client
                    .post(format!("{counter_url}/add"))
                    .json(&body)
                    .send()
                    .await?
            }
            Operation::AddAndGet => {
                client
                    .post(format!("{counter_url}/add-and-get"))
                    .json(&body)
                    .send()
                    .await?
            }
            Operation::Get => {
                let response = client.get(counter_url).send().await?;
                if response.status() == 404 {
                    continue; // A counter not written yet is a valid result.
                }
                response
            }
        };
        check(response).await?;
    }
    Ok(())
}

async fn check(response: reqwest::Response) -> Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("HTTP {status}: {body}");
    }
    Ok(body)
}

fn proto_token(request: &Request) -> Option<proto::IdempotencyToken> {
    request.token.as_ref().map(|token| proto::IdempotencyToken {
        token: token.clone(),
        generation_time: String::new(),
    })
}

async fn send_grpc(
    client: &mut TallyClient<tonic::transport::Channel>,
    namespace: &str,
    operation: Operation,
    requests: &[Request],
) -> Result<()> {
    if operation == Operation::Add && requests.len() > 1 {
        let items = requests
            .iter()
            .map(|r| proto::AddBatchItem {
                counter: r.key.clone(),
                delta: r.delta,
                idempotency_token: proto_token(r),
            })
            .collect();
        let reply = client
            .add_batch(proto::AddBatchRequest {
                namespace: namespace.to_owned(),
                items,
            })
            .await?
            .into_inner();
        for result in reply.results {
            if let Some(proto::add_batch_result::Result::Error(error)) = result.result {
                bail!("batch item failed: {} {}", error.code, error.message);
            }
        }
        return Ok(());
    }
    for request in requests {
        let add = proto::AddCountRequest {
            namespace: namespace.to_owned(),
            counter: request.key.clone(),
            delta: request.delta,
            idempotency_token: proto_token(request),
        };
        match operation {
            Operation::Add => {
                client.add_count(add).await?;
            }
            Operation::AddAndGet => {
                client.add_and_get_count(add).await?;
            }
            Operation::Get => {
                let get = proto::GetCountRequest {
                    namespace: namespace.to_owned(),
                    counter: request.key.clone(),
                };
                match client.get_count(get).await {
                    Ok(_) => {}
                    Err(status) if status.code() == tonic::Code::NotFound => {}
                    Err(status) => return Err(status.into()),
                }
            }
        }
    }
    Ok(())
}

async fn send_resp(
    connection: &mut redis::aio::MultiplexedConnection,
    tally: bool,
    operation: Operation,
    requests: &[Request],
) -> Result<()> {
    let mut pipe = redis::pipe();
    for request in requests {
        match (operation, tally, &request.token) {
            (Operation::Get, _, _) => pipe.cmd("GET").arg(&request.key),
            (Operation::Add, true, Some(token)) => pipe
                .cmd("TALLY.ADD")
                .arg(&request.key)
                .arg(request.delta)
                .arg(token),
            (Operation::AddAndGet, true, Some(token)) => pipe
                .cmd("TALLY.ADDGET")
                .arg(&request.key)
                .arg(request.delta)
                .arg(token),
            (Operation::Add | Operation::AddAndGet, _, _) => {
                pipe.cmd("INCRBY").arg(&request.key).arg(request.delta)
            }
        };
    }
    pipe.query_async::<Vec<redis::Value>>(connection).await?;
    Ok(())
}
