//! The OpenAPI 3.1 document served at `/openapi.json`.

use serde_json::{Value, json};

fn error_responses(codes: &[&str]) -> Value {
    let mut responses = serde_json::Map::new();
    for code in codes {
        responses.insert(
            (*code).to_owned(),
            json!({ "$ref": format!("#/components/responses/E{code}") }),
        );
    }
    Value::Object(responses)
}

fn with_errors(ok: Value, codes: &[&str]) -> Value {
    let mut responses = error_responses(codes);
    if let Value::Object(map) = &mut responses {
        map.insert("200".into(), ok);
    }
    responses
}

fn json_ok(schema: &str, description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    })
}

fn json_body(schema: &str, required: bool) -> Value {
    json!({
        "required": required,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    })
}

fn parameters(names: &[&str]) -> Value {
    Value::Array(
        names
            .iter()
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect(),
    )
}

fn change_operation(id: &str, summary: &str, body: &str, reply: &str) -> Value {
    json!({ "post": {
        "operationId": id,
        "summary": summary,
        "parameters": parameters(&["namespace", "counter"]),
        "requestBody": json_body(body, body == "AddRequest"),
        "responses": with_errors(json_ok(reply, "applied, or already applied with this token"), &["400", "404", "409", "413", "429", "503"]),
    }})
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

pub fn document() -> Value {
    let int64 = json!({ "type": "integer", "format": "int64" });
    let seconds = json!({ "type": "integer", "format": "int64", "description": "whole seconds" });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Tally",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Durable, idempotent counters. Integers are JSON numbers with all 64 bits; a delta may also be a string of decimal digits."
        },
        "paths": {
            "/healthz": { "get": { "operationId": "health", "summary": "200 while the server is serving", "responses": { "200": { "description": "serving" } } } },
            "/v1/namespaces": { "get": {
                "operationId": "listNamespaces",
                "summary": "List namespaces",
                "responses": { "200": json_ok("NamespaceList", "all namespaces") }
            }},
            "/v1/namespaces/{namespace}": {
                "get": {
                    "operationId": "getNamespace",
                    "summary": "Get a namespace's configuration",
                    "parameters": parameters(&["namespace"]),
                    "responses": with_errors(json_ok("Namespace", "the namespace"), &["400", "404"])
                },
                "put": {
                    "operationId": "putNamespace",
                    "summary": "Create a namespace or change its configuration; unset fields keep their value",
                    "parameters": parameters(&["namespace"]),
                    "requestBody": json_body("NamespaceConfig", false),
                    "responses": with_errors(json_ok("Namespace", "the namespace after the change"), &["400", "503"])
                }
            },
            "/v1/namespaces/{namespace}/counters": { "get": {
                "operationId": "listCounters",
                "summary": "List counter names in byte order",
                "parameters": [
                    { "name": "namespace", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "after", "in": "query", "schema": { "type": "string" }, "description": "start after this name" },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 1000 }, "description": "at most this many names; a page with fewer is the last" }
                ],
                "responses": with_errors(json_ok("CounterList", "counter names"), &["400", "404"])
            }},
            "/v1/namespaces/{namespace}/counters/{counter}": { "get": {
                "operationId": "getCount",
                "summary": "Get a counter's value",
                "parameters": parameters(&["namespace", "counter"]),
                "responses": with_errors(json_ok("Count", "the exact value"), &["400", "404"])
            }},
            "/v1/namespaces/{namespace}/counters/{counter}/add": change_operation("addCount", "Add a delta", "AddRequest", "ChangeResult"),
            "/v1/namespaces/{namespace}/counters/{counter}/add-and-get": change_operation("addAndGetCount", "Add a delta and return the new value", "AddRequest", "AddAndGetResult"),
            "/v1/namespaces/{namespace}/counters/{counter}/clear": change_operation("clearCount", "Reset a counter to 0", "ClearRequest", "ChangeResult"),
            "/v1/namespaces/{namespace}/add-batch": { "post": {
                "operationId": "addBatch",
                "summary": "Apply up to 1000 adds; each item succeeds or fails on its own",
                "parameters": parameters(&["namespace"]),
                "requestBody": json_body("BatchRequest", true),
                "responses": with_errors(json_ok("BatchResult", "one result per item, in order"), &["400", "404", "413", "429", "503"])
            }},
            "/v1/admin/rollup": { "post": {
                "operationId": "rollUp",
                "summary": "Roll up every sealed window now, then apply retention and token expiry",
                "responses": with_errors(json_ok("RollupReport", "what the rollup did"), &["503"])
            }}
        },
        "components": {
            "responses": {
                "E400": error_response("invalid request: the message names the field and the rule"),
                "E404": error_response("namespace or counter not found"),
                "E409": error_response("idempotency token already used for a different change"),
                "E413": error_response("body or batch over its size limit"),
                "E429": error_response("write queue full; retry later with the same token"),
                "E503": error_response("storage failure; nothing was written, retry with the same token")
            },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": { "code": { "type": "string" }, "message": { "type": "string" } }
                }}},
                "NamespaceConfig": { "type": "object", "additionalProperties": false, "properties": {
                    "counter_type": { "type": "string", "enum": ["eventual", "accurate", "best_effort"] },
                    "accept_limit_seconds": seconds,
                    "max_clock_skew_seconds": seconds,
                    "event_retention_seconds": seconds,
                    "idempotency_window_seconds": seconds
                }},
                "Namespace": { "allOf": [
                    { "type": "object", "properties": { "name": { "type": "string", "pattern": "^[a-z0-9_.-]{1,64}$" } } },
                    { "$ref": "#/components/schemas/NamespaceConfig" }
                ]},
                "NamespaceList": { "type": "object", "properties": { "namespaces": { "type": "array", "items": { "$ref": "#/components/schemas/Namespace" } } } },
                "CounterList": { "type": "object", "properties": {
                    "counters": { "type": "array", "items": { "type": "string" }, "description": "Names in byte order." },
                    "next_after": { "type": ["string", "null"], "description": "The after of the next page; null on the last page." }
                } },
                "IdempotencyToken": { "type": "object", "required": ["token"], "additionalProperties": false, "properties": {
                    "token": { "type": "string", "minLength": 1, "description": "1 to 128 bytes of UTF-8 without control characters" },
                    "generation_time": { "type": "string", "format": "date-time", "description": "event time; default: when the server receives the request" }
                }},
                "Delta": { "oneOf": [int64, { "type": "string", "pattern": "^-?[0-9]+$" }] },
                "AddRequest": { "type": "object", "required": ["delta"], "additionalProperties": false, "properties": {
                    "delta": { "$ref": "#/components/schemas/Delta" },
                    "idempotency_token": { "$ref": "#/components/schemas/IdempotencyToken" }
                }},
                "ClearRequest": { "type": "object", "additionalProperties": false, "properties": {
                    "idempotency_token": { "$ref": "#/components/schemas/IdempotencyToken" }
                }},
                "ChangeResult": { "type": "object", "properties": {
                    "event_id": { "type": "integer", "format": "uint64" },
                    "duplicate": { "type": "boolean" }
                }},
                "AddAndGetResult": { "type": "object", "properties": {
                    "value": int64,
                    "event_id": { "type": "integer", "format": "uint64" },
                    "duplicate": { "type": "boolean" }
                }},
                "Count": { "type": "object", "properties": {
                    "namespace": { "type": "string" }, "counter": { "type": "string" }, "value": int64
                }},
                "BatchRequest": { "type": "object", "required": ["items"], "additionalProperties": false, "properties": {
                    "items": { "type": "array", "maxItems": 1000, "items": {
                        "type": "object", "required": ["counter", "delta"], "additionalProperties": false,
                        "properties": {
                            "counter": { "type": "string" },
                            "delta": { "$ref": "#/components/schemas/Delta" },
                            "idempotency_token": { "$ref": "#/components/schemas/IdempotencyToken" }
                        }
                    }}
                }},
                "BatchResult": { "type": "object", "properties": { "results": { "type": "array", "items": {
                    "oneOf": [{ "$ref": "#/components/schemas/ChangeResult" }, { "$ref": "#/components/schemas/Error" }]
                }}}},
                "RollupReport": { "type": "object", "properties": {
                    "num_namespaces": { "type": "integer" }, "num_events": { "type": "integer" },
                    "num_checkpoints": { "type": "integer" }, "num_buckets_dropped": { "type": "integer" },
                    "num_tokens_expired": { "type": "integer" }
                }}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_lists_every_route() {
        let document = document();
        let routes = [
            ("/healthz", "get"),
            ("/v1/namespaces", "get"),
            ("/v1/namespaces/{namespace}", "get"),
            ("/v1/namespaces/{namespace}", "put"),
            ("/v1/namespaces/{namespace}/counters", "get"),
            ("/v1/namespaces/{namespace}/counters/{counter}", "get"),
            ("/v1/namespaces/{namespace}/counters/{counter}/add", "post"),
            (
                "/v1/namespaces/{namespace}/counters/{counter}/add-and-get",
                "post",
            ),
            (
                "/v1/namespaces/{namespace}/counters/{counter}/clear",
                "post",
            ),
            ("/v1/namespaces/{namespace}/add-batch", "post"),
            ("/v1/admin/rollup", "post"),
        ];
        for (path, method) in routes {
            assert!(
                document["paths"][path][method].is_object(),
                "{method} {path} is missing"
            );
        }
    }

    #[test]
    fn every_reference_resolves() {
        fn visit(value: &Value, document: &Value) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(reference)) = map.get("$ref") {
                        let pointer = reference.trim_start_matches('#');
                        assert!(
                            document.pointer(pointer).is_some(),
                            "unresolved {reference}"
                        );
                    }
                    map.values().for_each(|child| visit(child, document));
                }
                Value::Array(items) => items.iter().for_each(|child| visit(child, document)),
                _ => {}
            }
        }
        let document = document();
        visit(&document, &document);
    }
}
