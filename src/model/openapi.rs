//! The API's OpenAPI 3.1 document, served at `GET /v1/openapi.json`: the endpoint table below
//! plus JSON Schemas generated (`schemars`) from the very types the server serializes and
//! deserializes, so the document cannot describe a field the daemon does not send or accept.
//! Replies are described as the server writes them (a field it omits when empty is optional);
//! request bodies as it reads them (a field with a default is optional).

use schemars::generate::{Contract, SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// A parameter value as the API writes it: a JSON boolean, integer, number or string.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ParamValue {
    /// A boolean choice.
    Bool(bool),
    /// An integer parameter or choice.
    Int(i64),
    /// A float parameter or choice.
    Float(f64),
    /// A string choice.
    Str(String),
}

/// The schema of a trial's parameters: name → value.
pub type ParamsSchema = BTreeMap<String, ParamValue>;

/// An object whose fields this document does not spell out (GPU samples, slot usage, …;
/// docs/API.md and docs/CLI.md describe them).
pub type AnyObject = Map<String, Value>;

/// `GET /v1/health`.
#[derive(Serialize, JsonSchema)]
pub struct Health {
    /// Always true.
    pub ok: bool,
    /// quantune version.
    pub version: String,
}

/// `GET /v1/studies/{name}/trials/{n}`.
#[derive(Serialize, JsonSchema)]
pub struct TrialDetail {
    /// The trial.
    pub trial: crate::model::wire::TrialView,
    /// Its intermediate reports in arrival order.
    pub reports: Vec<Report>,
}

/// One intermediate report.
#[derive(Serialize, JsonSchema)]
pub struct Report {
    /// The step the values were measured at.
    pub step: u64,
    /// The values.
    pub values: BTreeMap<String, f64>,
    /// Unix time it was recorded.
    pub at: f64,
}

/// Reply of `POST …/report`.
#[derive(Serialize, JsonSchema)]
pub struct PruneReply {
    /// True when the trial was pruned (it is `pruned` now; stop it).
    pub prune: bool,
}

/// Body of `POST …/enqueue`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueRequest {
    /// The configuration (missing parameters are filled by the strategy).
    pub params: ParamsSchema,
}

/// Reply of `POST /v1/import`.
#[derive(Serialize, JsonSchema)]
pub struct ImportReply {
    /// The studies imported.
    pub studies: Vec<String>,
    /// Trials imported.
    pub trials: u64,
}

/// Every error reply.
#[derive(Serialize, JsonSchema)]
pub struct ErrorReply {
    /// What went wrong, naming the field or key at fault.
    pub error: String,
}

/// What a reply or request body is.
enum Body {
    /// None.
    Empty,
    /// JSON of this schema (a `$ref` or an inline schema).
    Json(Schema),
    /// Another media type, described in words.
    Text(&'static str, &'static str),
}

/// One row of the endpoint table.
struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    request: Body,
    status: u16,
    reply: Body,
}

/// The OpenAPI document, built anew on each call (it is small).
pub fn document() -> Value {
    let mut out = generator(Contract::Serialize);
    let mut inp = generator(Contract::Deserialize);
    let ops = vec![
        op(
            "GET",
            "/v1/health",
            "Liveness and version",
            Body::Empty,
            200,
            json_of::<Health>(&mut out),
        ),
        op(
            "GET",
            "/v1/status",
            "Daemon status: slots, GPUs, every study",
            Body::Empty,
            200,
            json_of::<crate::model::wire::DaemonStatus>(&mut out),
        ),
        op(
            "GET",
            "/v1/openapi.json",
            "This document",
            Body::Empty,
            200,
            Body::Json(schemars::json_schema!({"type": "object"})),
        ),
        op(
            "GET",
            "/metrics",
            "Prometheus exposition",
            Body::Empty,
            200,
            Body::Text("text/plain; version=0.0.4", "Prometheus text format"),
        ),
        op(
            "GET",
            "/v1/studies",
            "Every study",
            Body::Empty,
            200,
            json_of::<Vec<crate::model::wire::StudySummary>>(&mut out),
        ),
        op(
            "POST",
            "/v1/studies",
            "Submit a study file's TOML text",
            json_of::<crate::model::wire::SubmitRequest>(&mut inp),
            201,
            json_of::<crate::model::wire::StudySummary>(&mut out),
        ),
        op(
            "GET",
            "/v1/studies/{name}",
            "One study",
            Body::Empty,
            200,
            json_of::<crate::model::wire::StudySummary>(&mut out),
        ),
        op(
            "DELETE",
            "/v1/studies/{name}",
            "Delete a study: running trials are stopped first, then every record of it goes",
            Body::Empty,
            200,
            json_of::<crate::model::wire::DeleteReply>(&mut out),
        ),
        op(
            "POST",
            "/v1/studies/{name}/extend",
            "Raise a study's budgets; a completed study runs again",
            json_of::<crate::model::wire::ExtendRequest>(&mut inp),
            200,
            json_of::<crate::model::wire::StudySummary>(&mut out),
        ),
        op(
            "POST",
            "/v1/studies/{name}/tags",
            "Add and remove a study's tags",
            json_of::<crate::model::wire::TagRequest>(&mut inp),
            200,
            json_of::<crate::model::wire::StudySummary>(&mut out),
        ),
        op(
            "POST",
            "/v1/studies/{name}/note",
            "Set a study's notes (empty removes them)",
            json_of::<crate::model::wire::NoteRequest>(&mut inp),
            200,
            json_of::<crate::model::wire::StudySummary>(&mut out),
        ),
        op(
            "POST",
            "/v1/studies/{name}/trials/{n}/note",
            "Set a trial's note (empty removes it)",
            json_of::<crate::model::wire::NoteRequest>(&mut inp),
            200,
            json_of::<crate::model::wire::TrialView>(&mut out),
        ),
        op(
            "POST",
            "/v1/studies/{name}/copy",
            "Copy a study (every trial and report) to a new, independent study",
            json_of::<crate::model::wire::CopyRequest>(&mut inp),
            201,
            json_of::<crate::model::wire::StudySummary>(&mut out),
        ),
        op(
            "GET",
            "/v1/studies/{name}/trials",
            "A study's trials by number",
            Body::Empty,
            200,
            json_of::<Vec<crate::model::wire::TrialView>>(&mut out),
        ),
        op(
            "GET",
            "/v1/studies/{name}/trials/{n}",
            "One trial with its intermediate reports",
            Body::Empty,
            200,
            json_of::<TrialDetail>(&mut out),
        ),
        op(
            "GET",
            "/v1/studies/{name}/leaderboard",
            "Leaderboard rows in display order (?top=N)",
            Body::Empty,
            200,
            json_of::<Vec<crate::model::leaderboard::Row>>(&mut out),
        ),
        op(
            "POST",
            "/v1/studies/{name}/pause",
            "No new trials; running ones go on",
            Body::Empty,
            200,
            json_of::<crate::model::wire::StudySummary>(&mut out),
        ),
        op(
            "POST",
            "/v1/studies/{name}/resume",
            "Undo pause",
            Body::Empty,
            200,
            json_of::<crate::model::wire::StudySummary>(&mut out),
        ),
        op(
            "POST",
            "/v1/studies/{name}/cancel",
            "Cancel the study",
            Body::Empty,
            200,
            json_of::<crate::model::wire::StudySummary>(&mut out),
        ),
        op(
            "POST",
            "/v1/studies/{name}/ask",
            "Hand out the next trial of an external study",
            Body::Empty,
            200,
            json_of::<crate::model::wire::AskReply>(&mut out),
        ),
        op(
            "POST",
            "/v1/studies/{name}/trials/{n}/report",
            "An intermediate report; the reply says whether to prune",
            json_of::<crate::model::wire::ReportRequest>(&mut inp),
            200,
            json_of::<PruneReply>(&mut out),
        ),
        op(
            "POST",
            "/v1/studies/{name}/trials/{n}/tell",
            "Finish a trial: exactly one of metrics, failed, infeasible",
            json_of::<crate::model::wire::TellRequest>(&mut inp),
            200,
            json_of::<crate::model::wire::TrialView>(&mut out),
        ),
        op(
            "GET",
            "/v1/studies/{name}/trials/{n}/logs",
            "A piece of an attempt's stdout or stderr (?attempt=K&stream=stderr&offset=B&limit=B)",
            Body::Empty,
            200,
            json_of::<crate::model::wire::TrialLog>(&mut out),
        ),
        op(
            "GET",
            "/v1/studies/{name}/export",
            "The study as JSON lines",
            Body::Empty,
            200,
            Body::Text(
                "application/jsonl",
                "the study line, then one line per trial (docs/API.md)",
            ),
        ),
        op(
            "GET",
            "/v1/backup",
            "Every study as JSON lines, from one moment",
            Body::Empty,
            200,
            Body::Text("application/jsonl", "every study in export format"),
        ),
        op(
            "POST",
            "/v1/import",
            "Import JSON lines from export (?as=NAME renames a file's one study)",
            Body::Text("application/jsonl", "JSON lines from export or backup"),
            200,
            json_of::<ImportReply>(&mut out),
        ),
        op(
            "POST",
            "/v1/studies/{name}/import",
            "Store results run elsewhere as finished trials",
            json_of::<crate::model::results::ImportRequest>(&mut inp),
            201,
            json_of::<Vec<crate::model::wire::TrialView>>(&mut out),
        ),
        op(
            "POST",
            "/v1/studies/{name}/enqueue",
            "Queue a configuration before the strategy's next",
            json_of::<EnqueueRequest>(&mut inp),
            201,
            json_of::<crate::model::wire::TrialView>(&mut out),
        ),
    ];
    let error = json_of::<ErrorReply>(&mut out);
    let mut schemas = out.take_definitions(true);
    schemas.extend(inp.take_definitions(true));
    let mut paths = Map::new();
    for o in ops {
        let entry = paths
            .entry(o.path.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("path items are objects");
        entry.insert(o.method.to_lowercase(), operation(&o, &error));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "quantune daemon API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The daemon's HTTP/JSON API on its Unix socket, and on its optional TCP listener behind `Authorization: Bearer <token>` (docs/API.md).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "TCP listener only; the Unix socket is guarded by file permissions"}},
        },
    })
}

fn generator(contract: Contract) -> SchemaGenerator {
    let mut s = SchemaSettings::draft2020_12();
    s.definitions_path = "/components/schemas".into();
    s.meta_schema = None;
    s.contract = contract;
    s.into_generator()
}

fn json_of<T: JsonSchema>(g: &mut SchemaGenerator) -> Body {
    Body::Json(g.subschema_for::<T>())
}

fn op(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    request: Body,
    status: u16,
    reply: Body,
) -> Op {
    Op {
        method,
        path,
        summary,
        request,
        status,
        reply,
    }
}

fn content(b: &Body) -> Option<Value> {
    match b {
        Body::Empty => None,
        Body::Json(s) => Some(json!({"application/json": {"schema": s}})),
        Body::Text(media, what) => {
            Some(json!({(*media): {"schema": {"type": "string", "description": what}}}))
        }
    }
}

fn operation(o: &Op, error: &Body) -> Value {
    let mut params = Vec::new();
    for (name, what) in [
        ("name", "the study name"),
        ("n", "the trial number (from 0)"),
    ] {
        if o.path.contains(&format!("{{{name}}}")) {
            let schema = if name == "n" {
                json!({"type": "integer", "minimum": 0})
            } else {
                json!({"type": "string"})
            };
            params.push(json!({"name": name, "in": "path", "required": true, "description": what, "schema": schema}));
        }
    }
    if o.path.ends_with("/leaderboard") {
        params.push(json!({"name": "top", "in": "query", "required": false, "description": "only the first N rows", "schema": {"type": "integer", "minimum": 0}}));
    }
    let mut reply = json!({"description": o.summary});
    if let Some(c) = content(&o.reply) {
        reply["content"] = c;
    }
    let err = json!({"description": "refused: the message names the field or the conflict", "content": content(error)});
    let mut v = json!({
        "summary": o.summary,
        "operationId": operation_id(o),
        "parameters": params,
        "responses": {o.status.to_string(): reply, "4XX": err.clone(), "5XX": err},
        "security": [{}, {"bearer": []}],
    });
    if let Some(c) = content(&o.request) {
        v["requestBody"] = json!({"required": true, "content": c});
    }
    v
}

/// `get_v1_studies_name_trials_n`-style ids, unique per method and path.
fn operation_id(o: &Op) -> String {
    let mut id = o.method.to_lowercase();
    for part in o.path.split(['/', '.']).filter(|p| !p.is_empty()) {
        id.push('_');
        id.push_str(part.trim_matches(['{', '}']));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.trim_start_matches("#/components/schemas/");
                &doc["components"]["schemas"][name]
            }
            None => schema,
        }
    }

    #[test]
    fn every_reference_resolves_and_ids_are_unique() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
        let mut ids = std::collections::HashSet::new();
        for (_, item) in doc["paths"].as_object().unwrap() {
            for (_, op) in item.as_object().unwrap() {
                assert!(ids.insert(op["operationId"].as_str().unwrap().to_string()));
            }
        }
    }

    #[test]
    fn every_route_of_the_server_is_documented() {
        // The router's paths, read from its source (axum cannot list its routes).
        let src = include_str!("../daemon/api.rs");
        let routes: std::collections::BTreeSet<&str> = src
            .split(".route(")
            .skip(1)
            .filter_map(|r| r.trim_start().strip_prefix('"')?.split('"').next())
            .collect();
        assert!(routes.len() >= 20, "{routes:?}");
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        for r in &routes {
            assert!(
                paths.contains_key(*r),
                "route {r} is not in the OpenAPI document"
            );
        }
        assert_eq!(
            routes.len(),
            paths.len(),
            "documented paths the server lacks"
        );
    }

    #[test]
    fn replies_are_described_as_written_and_requests_as_read() {
        let doc = document();
        let trial = &doc["components"]["schemas"]["TrialView"];
        let required: Vec<&str> = trial["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        // Always written: required. Omitted when empty: optional.
        assert!(required.contains(&"trial") && required.contains(&"params"));
        assert!(!required.contains(&"stderr_tail") && !required.contains(&"imported"));
        // A request field with a default may be left out.
        let submit = &doc["components"]["schemas"]["SubmitRequest"];
        assert_eq!(submit["required"], json!(["source"]));
        // The leaderboard row carries the flattened trial's fields.
        let op = &doc["paths"]["/v1/studies/{name}/leaderboard"]["get"];
        let items = &op["responses"]["200"]["content"]["application/json"]["schema"]["items"];
        let row = resolve(&doc, items);
        for f in ["rank", "feasible", "best", "trial", "params", "metrics"] {
            assert!(
                row["properties"].get(f).is_some(),
                "row has no {f}: {row:#}"
            );
        }
    }
}
