//! A mocked API server: an in-memory object store behind a tower service that answers
//! GET/LIST/PATCH/POST/DELETE like the API server does (server-side applies that record their
//! field manager in `managedFields`, merge patches, canonical quantities, `stringData`, refusals
//! on demand) and records every write.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// What the API server does to the quantities these tests use: it stores them in canonical
/// form, so the object read back differs in spelling from the object applied.
fn canonicalise_quantities(value: &mut Value) {
    match value {
        Value::String(text) => match text.as_str() {
            "1000m" => *text = "1".to_owned(),
            "0.5Gi" => *text = "512Mi".to_owned(),
            _ => {}
        },
        Value::Object(map) => map.values_mut().for_each(canonicalise_quantities),
        Value::Array(items) => items.iter_mut().for_each(canonicalise_quantities),
        _ => {}
    }
}

/// The `fieldsV1` of an applied object: `f:<key>` for every field, leaves as `{}` (lists count
/// as leaves, which is all the scenarios need).
fn fields_of(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, child)| (format!("f:{key}"), fields_of(child)))
                .collect(),
        ),
        _ => json!({}),
    }
}

/// What the API server does to a Secret's `stringData`: it is stored base64-encoded in `data`.
fn store_string_data(object: &mut Value) {
    let Some(Value::Object(strings)) = object.as_object_mut().and_then(|o| o.remove("stringData"))
    else {
        return;
    };
    for (key, value) in strings {
        let bytes = k8s_openapi::ByteString(value.as_str().unwrap_or_default().as_bytes().to_vec());
        object["data"][key] = serde_json::to_value(bytes).unwrap_or_default();
    }
}

/// What the mocked API server holds.
#[derive(Default)]
pub(super) struct ApiState {
    /// Every object by its API path.
    pub(super) objects: BTreeMap<String, Value>,
    /// `METHOD path` of every request but GETs, oldest first.
    pub(super) writes: Vec<String>,
    /// Paths whose PATCH the API server refuses, with the status code and message.
    pub(super) refusals: HashMap<String, (u16, String)>,
    /// The last resourceVersion handed out.
    pub(super) revision: u64,
}

impl ApiState {
    /// Stores `object` at `path` as the API server does: a new resourceVersion on every write,
    /// the uid of the object it replaces (or a new one, `uid-<name>`, for a new object).
    fn store(&mut self, path: &str, mut object: Value) -> Value {
        self.revision += 1;
        let uid = self
            .objects
            .get(path)
            .and_then(|previous| previous["metadata"]["uid"].as_str().map(str::to_owned))
            .or_else(|| object["metadata"]["uid"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("uid-{}", path.rsplit('/').next().unwrap_or_default()));
        if object.is_object() {
            object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
            object["metadata"]["uid"] = json!(uid);
        }
        self.objects.insert(path.to_owned(), object.clone());
        object
    }
}

/// The mocked API server; clones share one state.
#[derive(Clone, Default)]
pub(super) struct MockApi(pub(super) Arc<Mutex<ApiState>>);

fn not_found() -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "not found", "reason": "NotFound", "code": 404}),
    )
}

impl MockApi {
    fn handle(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        content_type: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let Ok(mut state) = self.0.lock() else {
            return (StatusCode::INTERNAL_SERVER_ERROR, json!({}));
        };
        if *method != Method::GET {
            state.writes.push(format!("{method} {path}"));
        }
        match *method {
            Method::GET => {
                if let Some(object) = state.objects.get(path) {
                    return (StatusCode::OK, object.clone());
                }
                let prefix = format!("{path}/");
                let items: Vec<Value> = state
                    .objects
                    .iter()
                    .filter(|(key, _)| {
                        key.strip_prefix(&prefix)
                            .is_some_and(|rest| !rest.contains('/'))
                    })
                    .map(|(_, v)| v.clone())
                    .collect();
                let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
                let is_list = segments
                    .iter()
                    .position(|s| *s == "namespaces")
                    .is_some_and(|i| segments.len() == i + 3);
                if is_list {
                    (
                        StatusCode::OK,
                        json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}),
                    )
                } else {
                    not_found()
                }
            }
            Method::PATCH => {
                if let Some((code, message)) = state.refusals.get(path) {
                    let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::FORBIDDEN);
                    return (
                        status,
                        json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                               "status": "Failure", "message": message, "reason": "Forbidden",
                               "code": code}),
                    );
                }
                let body = body.unwrap_or_default();
                if let Some(object_path) = path.strip_suffix("/status") {
                    let Some(object) = state.objects.get_mut(object_path) else {
                        return not_found();
                    };
                    // A JSON merge patch (RFC 7386), like the API server: fields the patch
                    // does not mention are kept, `null` removes.
                    merge_patch(&mut object["status"], &body["status"]);
                    return (StatusCode::OK, object.clone());
                }
                if content_type.starts_with("application/merge-patch") {
                    let Some(object) = state.objects.get_mut(path) else {
                        return not_found();
                    };
                    merge_patch(object, &body);
                    let merged = object.clone();
                    return (StatusCode::OK, state.store(path, merged));
                }
                let mut stored = body;
                canonicalise_quantities(&mut stored);
                // A server-side apply: the object as applied, owned by the applying manager.
                let manager = query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("fieldManager="))
                    .unwrap_or("unknown")
                    .to_owned();
                let mut owned = stored.clone();
                if let Some(fields) = owned.as_object_mut() {
                    for envelope in ["apiVersion", "kind", "status"] {
                        fields.remove(envelope);
                    }
                }
                stored["metadata"]["managedFields"] = json!([{"manager": manager,
                    "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": fields_of(&owned)}]);
                if let Some(previous) = state.objects.get(path) {
                    if let Some(status) = previous.get("status") {
                        stored["status"] = status.clone();
                    }
                    if stored.get("data").is_none() {
                        if let Some(data) = previous.get("data") {
                            stored["data"] = data.clone();
                        }
                    }
                }
                (StatusCode::OK, state.store(path, stored))
            }
            Method::POST => {
                let mut body = body.unwrap_or_default();
                store_string_data(&mut body);
                let name = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or("event")
                    .to_owned();
                (
                    StatusCode::CREATED,
                    state.store(&format!("{path}/{name}"), body),
                )
            }
            Method::DELETE => match state.objects.remove(path) {
                Some(object) => (StatusCode::OK, object),
                None => not_found(),
            },
            _ => (StatusCode::METHOD_NOT_ALLOWED, json!({})),
        }
    }

    /// A kube client whose requests this mock answers.
    pub(super) fn client(&self) -> Client {
        let mock = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let mock = mock.clone();
            async move {
                let method = request.method().clone();
                let path = request.uri().path().to_owned();
                let query = request.uri().query().unwrap_or_default().to_owned();
                let content_type = request
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let bytes = request.into_body().collect().await?.to_bytes();
                let body = serde_json::from_slice::<Value>(&bytes).ok();
                let (status, value) = mock.handle(&method, &path, &query, &content_type, body);
                let response = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&value).unwrap_or_default()));
                response.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            }
        });
        Client::new(service, "apps")
    }

    /// The writes since the last call.
    pub(super) fn take_writes(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut s| std::mem::take(&mut s.writes))
            .unwrap_or_default()
    }

    /// The object at `path`.
    pub(super) fn get(&self, path: &str) -> Option<Value> {
        self.0.lock().ok()?.objects.get(path).cloned()
    }

    /// Stores `value` at `path`, as if someone else wrote it.
    pub(super) fn put(&self, path: &str, value: Value) {
        if let Ok(mut state) = self.0.lock() {
            state.store(path, value);
        }
    }
}
