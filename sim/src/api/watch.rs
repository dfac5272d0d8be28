//! Watch: a stream of JSON events from a resourceVersion, with bookmarks and timeouts.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::selector::{FieldSelector, LabelSelector};
use super::{Request, table};
use crate::error::ApiError;
use crate::object::Meta;
use crate::resources::ResourceType;
use crate::store::{EventType, ResKey, Store};

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

/// What a watch selects.
pub struct Filter {
    /// The kind.
    pub res: ResKey,
    /// The type served, for the apiVersion written on objects.
    pub ty: ResourceType,
    /// One namespace, or all.
    pub namespace: Option<String>,
    /// Labels.
    pub labels: LabelSelector,
    /// Fields.
    pub fields: FieldSelector,
    /// Objects as one-row Tables (`kubectl get -w`).
    pub table: bool,
}

impl Filter {
    fn selects(&self, object: &Value) -> bool {
        let meta = Meta::of(object);
        self.namespace
            .as_deref()
            .is_none_or(|ns| meta.namespace() == ns)
            && self.labels.matches(meta.labels())
            && self.fields.matches(object)
    }

    fn line(&self, kind: &str, object: &Value, rv: u64) -> Vec<u8> {
        let object = if self.table {
            table::table(&self.ty, &[object], rv)
        } else {
            super::handlers::served(object, &self.ty)
        };
        let mut line =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// Starts a watch and returns the streaming response.
pub fn watch(store: Arc<Store>, filter: Filter, request: &Request) -> Result<Response, ApiError> {
    let rv = request
        .query
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or("");
    let bookmarks = request.flag("allowWatchBookmarks");
    let initial_end = request.flag("sendInitialEvents");
    let timeout = request
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);

    let mut first: Vec<Vec<u8>> = Vec::new();
    let receiver = if rv.is_empty() || rv == "0" || initial_end {
        let (snapshot, receiver) = store.watch_with_state(&filter.res);
        for object in snapshot.items.iter().filter(|o| filter.selects(o)) {
            first.push(filter.line("ADDED", object, snapshot.rv));
        }
        if initial_end {
            first.push(bookmark(&filter, snapshot.rv, true));
        }
        receiver
    } else {
        let from: u64 = rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
        match store.watch_from(from) {
            Ok((backlog, receiver)) => {
                for event in backlog.iter().filter(|e| e.res == filter.res) {
                    if let Some(line) = event_line(&filter, event) {
                        first.push(line);
                    }
                }
                receiver
            }
            Err(gone) => {
                // A real API server answers 200 and sends the 410 as an ERROR event.
                let mut line =
                    serde_json::to_vec(&json!({"type": "ERROR", "object": gone.status()}))
                        .unwrap_or_default();
                line.push(b'\n');
                return Ok(stream_response(futures::stream::iter([Ok::<
                    _,
                    std::io::Error,
                >(
                    line
                )])));
            }
        }
    };

    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(256);
    tokio::spawn(async move {
        let mut receiver = receiver;
        for line in first {
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        tick.tick().await;
        loop {
            let until_deadline = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = receiver.recv() => match received {
                    Ok(event) => {
                        if event.res != filter.res {
                            continue;
                        }
                        if let Some(line) = event_line(&filter, &event)
                            && tx.send(Ok(line)).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        let status = ApiError::gone(store.resource_version()).status();
                        let mut line = serde_json::to_vec(&json!({"type": "ERROR", "object": status})).unwrap_or_default();
                        line.push(b'\n');
                        let _ = tx.send(Ok(line)).await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    if tx.send(Ok(bookmark(&filter, store.resource_version(), false))).await.is_err() {
                        return;
                    }
                }
                () = until_deadline => return,
                () = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (line, rx))
    });
    Ok(stream_response(stream))
}

fn stream_response<S>(stream: S) -> Response
where
    S: futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static,
{
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// The watch line for a change, as seen through the filter's selectors.
fn event_line(filter: &Filter, event: &crate::store::Event) -> Option<Vec<u8>> {
    let now = filter.selects(&event.object);
    let before = event.previous.as_deref().is_some_and(|p| filter.selects(p));
    let kind = match (event.kind, before, now) {
        (EventType::Deleted, _, true) => "DELETED",
        (EventType::Added, _, true) => "ADDED",
        (EventType::Modified, true, true) => "MODIFIED",
        (EventType::Modified, false, true) => "ADDED",
        (EventType::Modified, true, false) => "DELETED",
        _ => return None,
    };
    Some(filter.line(kind, &event.object, event.rv))
}

fn bookmark(filter: &Filter, rv: u64, initial_end: bool) -> Vec<u8> {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let object = json!({"kind": filter.ty.kind, "apiVersion": filter.ty.api_version(), "metadata": metadata});
    let mut line =
        serde_json::to_vec(&json!({"type": "BOOKMARK", "object": object})).unwrap_or_default();
    line.push(b'\n');
    line
}
