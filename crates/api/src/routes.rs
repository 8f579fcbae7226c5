//! Endpoints. Every route is registered through [`Builder`], which records it so a test can
//! check the OpenAPI document against what is actually served.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::handler::Handler;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures_util::{SinkExt, Stream, StreamExt};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::admin::{ExplainRequest, ListAdd, RulesSwap, ShadowLoad};
use crate::auth::QueueFilter;
use crate::error::ApiError;
use crate::hub::PopEvent;
use crate::Api;

type ApiResult = Result<Response, ApiError>;
type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

const DESKTOP_HTML: &str = include_str!("../desktop/index.html");
const DESKTOP_JS: &str = include_str!("../desktop/app.js");
const DESKTOP_CSS: &str = include_str!("../desktop/app.css");
const SHADOW_HTML: &str = include_str!("../desktop/shadow.html");
const SHADOW_JS: &str = include_str!("../desktop/shadow.js");

struct Builder {
    router: Router<Api>,
    list: Vec<(&'static str, &'static str)>,
}

impl Builder {
    fn get<H: Handler<T, Api>, T: 'static>(mut self, path: &'static str, h: H) -> Self {
        self.router = self.router.route(path, get(h));
        self.list.push(("get", path));
        self
    }
    fn post<H: Handler<T, Api>, T: 'static>(mut self, path: &'static str, h: H) -> Self {
        self.router = self.router.route(path, post(h));
        self.list.push(("post", path));
        self
    }
    fn delete<H: Handler<T, Api>, T: 'static>(mut self, path: &'static str, h: H) -> Self {
        self.router = self.router.route(path, delete(h));
        self.list.push(("delete", path));
        self
    }
}

pub(crate) fn build(api: Api) -> (Router, Vec<(&'static str, &'static str)>) {
    let b = Builder {
        router: Router::new(),
        list: Vec::new(),
    }
    .get("/healthz", healthz)
    .get("/readyz", readyz)
    .get("/metrics", metrics)
    .get("/v1/openapi.json", openapi)
    .get("/desktop", desktop)
    .get("/desktop/app.js", desktop_js)
    .get("/desktop/app.css", desktop_css)
    .get("/desktop/shadow", shadow_page)
    .get("/desktop/shadow.js", shadow_js)
    .post("/v1/pops/ticket", ticket)
    .get("/v1/pops", recent)
    .get("/v1/pops/stream", stream)
    .get("/v1/pops/ws", websocket)
    .get("/v1/pops/{call_ref}", pop_by_ref)
    .get("/v1/admin/lists", lists_show)
    .post("/v1/admin/lists/{list}", lists_add)
    .delete("/v1/admin/lists/{list}/{pattern}", lists_remove)
    .post("/v1/admin/rules/reload", rules_reload)
    .post("/v1/admin/rules/promote", rules_promote)
    .post("/v1/admin/rules/rollback", rules_rollback)
    .get("/v1/admin/rules/history", rules_history)
    .get("/v1/admin/rules/history/{version}", rules_version)
    .get("/v1/admin/shadow", shadow_show)
    .post("/v1/admin/shadow", shadow_load)
    .delete("/v1/admin/shadow", shadow_clear)
    .post("/v1/admin/explain", explain)
    .post("/v1/admin/crm/invalidate", crm_invalidate)
    .get("/v1/admin/config", config);
    let router = b
        .router
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this endpoint",
            )
        })
        .with_state(api);
    (router, b.list)
}

fn params(q: Params) -> Result<Vec<(String, String)>, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::bad_request(format!("query string: {}", e.body_text())))
}

fn param<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `queue=a,b` and `queue=a&queue=b` both work.
fn queues(p: &[(String, String)]) -> Vec<String> {
    p.iter()
        .filter(|(k, _)| k == "queue")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(str::to_owned)
        .collect()
}

fn number_param(
    p: &[(String, String)],
    name: &str,
    default: u64,
    max: u64,
) -> Result<u64, ApiError> {
    match param(p, name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .map(|n| n.min(max))
            .map_err(|_| ApiError::bad_request(format!("{name}: expected a whole number"))),
    }
}

/// 413 for a body over the limit (axum's 2 MB default), 415 for a content type other than
/// JSON, 400 for anything else wrong with it; always the JSON error body.
fn json_body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(v)| v).map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body: larger than the 2 MB limit",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "request body: expected `Content-Type: application/json`",
        ),
        _ => ApiError::bad_request(format!("request body: {}", e.body_text())),
    })
}

fn raw_json(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(api): State<Api>) -> ApiResult {
    if !api.hub.bus_ready.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "screen pops: the Redis subscription is not up",
        ));
    }
    api.admin
        .ready()
        .map_err(|why| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", why))?;
    Ok(Json(json!({"status": "ready", "node": api.hub.node()})).into_response())
}

async fn metrics(State(api): State<Api>) -> ApiResult {
    let handle = api.metrics.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            "no metrics recorder is installed",
        )
    })?;
    metrics::gauge!("tollgate_pop_subscribers").set(api.hub.subscribers() as f64);
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        handle.render(),
    )
        .into_response())
}

async fn openapi() -> Response {
    raw_json(StatusCode::OK, crate::OPENAPI.to_owned())
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
                ),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn desktop() -> Response {
    static_file("text/html; charset=utf-8", DESKTOP_HTML)
}

async fn desktop_js() -> Response {
    static_file("text/javascript; charset=utf-8", DESKTOP_JS)
}

async fn desktop_css() -> Response {
    static_file("text/css; charset=utf-8", DESKTOP_CSS)
}

async fn shadow_page() -> Response {
    static_file("text/html; charset=utf-8", SHADOW_HTML)
}

async fn shadow_js() -> Response {
    static_file("text/javascript; charset=utf-8", SHADOW_JS)
}

/// A single-use stream ticket for browsers, with the token's scope.
async fn ticket(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    let p = api.auth.bearer(&headers)?;
    let queues = p.filter(&[])?.names();
    let name = p.name.to_string();
    let t = api.auth.issue(p)?;
    Ok(Json(json!({
        "ticket": t,
        "expires_in_s": api.auth.ticket_ttl().as_secs(),
        "token": name,
        "queues": queues,
    }))
    .into_response())
}

async fn recent(State(api): State<Api>, headers: HeaderMap, q: Params) -> ApiResult {
    let p = params(q)?;
    let who = api.auth.bearer(&headers)?;
    let filter = who.filter(&queues(&p))?;
    let limit = usize::try_from(number_param(&p, "limit", 50, 500)?).unwrap_or(500);
    let pops = api.hub.recent(limit, |q| filter.allows(q));
    let mut body = String::from("[");
    for (i, ev) in pops.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&ev.json());
    }
    body.push(']');
    Ok(raw_json(StatusCode::OK, body))
}

async fn pop_by_ref(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(call_ref): Path<String>,
    q: Params,
) -> ApiResult {
    let p = params(q)?;
    let who = api.auth.bearer(&headers)?;
    let wait = Duration::from_millis(number_param(&p, "wait_ms", 0, 10_000)?);
    // A pop of a queue the token may not read is answered exactly as one that does not exist
    // (404, the same message, after the same wait): an agent learns nothing about other queues.
    let readable = |ev: &Arc<PopEvent>| who.may_read(&ev.queue);
    // Subscribe before looking, so a pop stored in between is not missed.
    let mut rx = api.hub.subscribe();
    let found = match api.hub.get(&call_ref).filter(readable) {
        Some(ev) => Some(ev),
        None if wait.is_zero() => None,
        None => {
            let mut stop = api.hub.stopping();
            let wanted = async {
                loop {
                    match rx.recv().await {
                        Ok(ev) if ev.call_ref == call_ref && readable(&ev) => return Some(ev),
                        Ok(_) | Err(RecvError::Lagged(_)) => {
                            if let Some(ev) = api.hub.get(&call_ref).filter(readable) {
                                return Some(ev);
                            }
                        }
                        Err(RecvError::Closed) => return None,
                    }
                }
            };
            tokio::select! {
                r = tokio::time::timeout(wait, wanted) => r.ok().flatten(),
                _ = crate::hub::stopped(&mut stop) => None,
            }
        }
    };
    let ev = found.ok_or_else(|| {
        ApiError::not_found(format!("no screen pop for call reference {call_ref:?}"))
    })?;
    Ok(raw_json(StatusCode::OK, ev.json().into_owned()))
}

/// Counts open streams for `/metrics`; decremented when the stream is dropped.
struct Open(&'static str);

impl Open {
    fn new(kind: &'static str) -> Self {
        metrics::gauge!("tollgate_pop_streams", "kind" => kind).increment(1.0);
        Self(kind)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!("tollgate_pop_streams", "kind" => self.0).decrement(1.0);
    }
}

fn hello(api: &Api, filter: &QueueFilter) -> String {
    json!({"node": api.hub.node(), "queues": filter.names()}).to_string()
}

async fn stream(
    State(api): State<Api>,
    headers: HeaderMap,
    q: Params,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let p = params(q)?;
    let who = api.auth.bearer_or_ticket(&headers, param(&p, "ticket"))?;
    let filter = who.filter(&queues(&p))?;
    let first = Event::default().event("hello").data(hello(&api, &filter));
    // Subscribe before reading the store, so a pop published in between is in one or both;
    // `replayed` keeps it from being sent twice.
    let rx = api.hub.subscribe();
    let (missed, replayed) = replay(&api, &headers, &p, &filter)?;
    let state = (rx, api.hub.stopping(), filter, replayed, Open::new("sse"));
    let pops = futures_util::stream::unfold(
        state,
        |(mut rx, mut stop, filter, mut replayed, open)| async move {
            loop {
                let got = tokio::select! {
                    r = rx.recv() => r,
                    _ = crate::hub::stopped(&mut stop) => return None,
                };
                let event = match got {
                    Ok(ev) if replayed.seen(&ev) => continue,
                    Ok(ev) if filter.allows(&ev.queue) => pop_event(&ev),
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => Event::default()
                        .event("lagged")
                        .data(json!({"missed": n}).to_string()),
                    Err(RecvError::Closed) => return None,
                };
                return Some((Ok(event), (rx, stop, filter, replayed, open)));
            }
        },
    );
    let all = futures_util::stream::once(std::future::ready(Ok(first)))
        .chain(futures_util::stream::iter(missed.into_iter().map(Ok)))
        .chain(pops);
    Ok(Sse::new(all).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// What a reconnecting client missed: the `Last-Event-ID` header (which `EventSource` sends
/// on its own reconnects) or the `last_event_id` parameter (for clients that open a new stream
/// with a new ticket) names the last pop it got. The events to send first, and the pops among
/// them (skipped if the live subscription delivers them again). An id no longer stored gives
/// one `lagged` event with `missed: null`: the client should re-read `GET /v1/pops`.
fn replay(
    api: &Api,
    headers: &HeaderMap,
    p: &[(String, String)],
    filter: &QueueFilter,
) -> Result<(Vec<Event>, Replayed), ApiError> {
    let from_header =
        match headers.get("last-event-id") {
            Some(v) => Some(v.to_str().map_err(|_| {
                ApiError::bad_request("Last-Event-ID: not visible ASCII".to_owned())
            })?),
            None => None,
        };
    let Some(last) = from_header
        .or_else(|| param(p, "last_event_id"))
        .map(str::trim)
    else {
        return Ok((Vec::new(), Replayed::default()));
    };
    if last.is_empty() {
        return Ok((Vec::new(), Replayed::default()));
    }
    match api.hub.since(last, |q| filter.allows(q)) {
        Some(pops) => {
            metrics::counter!("tollgate_pops_replayed_total").increment(pops.len() as u64);
            let sent = Replayed {
                pops: pops
                    .iter()
                    .map(|e| (e.call_ref.clone(), e.stored_at))
                    .collect(),
                at: Some(Instant::now()),
            };
            Ok((pops.iter().map(|e| pop_event(e)).collect(), sent))
        }
        None => Ok((
            vec![Event::default()
                .event("lagged")
                .data(json!({"missed": null, "last_event_id": last}).to_string())],
            Replayed::default(),
        )),
    }
}

/// The pops a stream replayed, so the live subscription does not send them again.
#[derive(Default)]
struct Replayed {
    pops: HashSet<(String, Instant)>,
    at: Option<Instant>,
}

impl Replayed {
    fn seen(&mut self, ev: &PopEvent) -> bool {
        if self.pops.is_empty() {
            return false;
        }
        // A pop stored well after the replay ends the window in which one could come twice.
        if self
            .at
            .is_some_and(|at| ev.stored_at > at + Duration::from_secs(2))
        {
            self.pops = HashSet::new();
            return false;
        }
        self.pops.contains(&(ev.call_ref.clone(), ev.stored_at))
    }
}

fn pop_event(ev: &PopEvent) -> Event {
    Event::default()
        .event("pop")
        .id(&ev.call_ref)
        .data(&*ev.json())
}

async fn websocket(
    State(api): State<Api>,
    headers: HeaderMap,
    q: Params,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult {
    let p = params(q)?;
    let who = api.auth.bearer_or_ticket(&headers, param(&p, "ticket"))?;
    let filter = who.filter(&queues(&p))?;
    let ws = ws.map_err(|e| {
        ApiError::bad_request(format!("not a WebSocket upgrade: {}", e.body_text()))
    })?;
    // Subscribe now, so nothing published after the 101 is missed.
    let rx = api.hub.subscribe();
    let stop = api.hub.stopping();
    let hello =
        json!({"type": "hello", "node": api.hub.node(), "queues": filter.names()}).to_string();
    Ok(ws.on_upgrade(move |socket| ws_session(socket, rx, stop, filter, hello)))
}

async fn ws_session(
    socket: WebSocket,
    mut rx: tokio::sync::broadcast::Receiver<Arc<PopEvent>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    filter: QueueFilter,
    hello: String,
) {
    let _open = Open::new("ws");
    let (mut tx, mut incoming) = socket.split();
    if tx.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            r = rx.recv() => {
                let text = match r {
                    Ok(ev) if filter.allows(&ev.queue) => {
                        format!("{{\"type\":\"pop\",\"pop\":{}}}", ev.json())
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => json!({"type": "lagged", "missed": n}).to_string(),
                    Err(RecvError::Closed) => break,
                };
                if tx.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            m = incoming.next() => match m {
                // Pings are answered by the library; anything else from the client is ignored.
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            _ = crate::hub::stopped(&mut stop) => break,
        }
    }
    let _ = tx.send(Message::Close(None)).await;
}

async fn lists_show(State(api): State<Api>, headers: HeaderMap, q: Params) -> ApiResult {
    let p = params(q)?;
    api.auth.admin(&headers)?;
    let list = param(&p, "list").map(str::to_owned);
    Ok(Json(api.admin.lists_show(list).await?).into_response())
}

async fn lists_add(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(list): Path<String>,
    body: Result<Json<ListAdd>, JsonRejection>,
) -> ApiResult {
    let who = api.auth.admin(&headers)?;
    let mut entry = json_body(body)?;
    if entry.who.is_none() {
        entry.who = Some(who.name.to_string());
    }
    let v = api.admin.lists_add(list, entry).await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn lists_remove(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((list, pattern)): Path<(String, String)>,
) -> ApiResult {
    api.auth.admin(&headers)?;
    Ok(Json(api.admin.lists_remove(list, pattern).await?).into_response())
}

async fn rules_reload(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.auth.admin(&headers)?;
    Ok(Json(api.admin.reload_rules().await?).into_response())
}

async fn rules_swap(
    api: Api,
    headers: HeaderMap,
    body: Result<Json<RulesSwap>, JsonRejection>,
    rollback: bool,
) -> ApiResult {
    let who = api.auth.admin(&headers)?;
    let mut swap = match body {
        // No body: no reason given.
        Err(JsonRejection::MissingJsonContentType(_))
            if !headers.contains_key(header::CONTENT_TYPE) =>
        {
            RulesSwap {
                rollback,
                reason: String::new(),
                who: None,
            }
        }
        other => json_body(other)?,
    };
    swap.rollback = rollback;
    if swap.who.is_none() {
        swap.who = Some(who.name.to_string());
    }
    Ok(Json(api.admin.rules_swap(swap).await?).into_response())
}

async fn rules_promote(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Json<RulesSwap>, JsonRejection>,
) -> ApiResult {
    rules_swap(api, headers, body, false).await
}

async fn rules_rollback(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Json<RulesSwap>, JsonRejection>,
) -> ApiResult {
    rules_swap(api, headers, body, true).await
}

async fn rules_history(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.auth.admin(&headers)?;
    Ok(Json(api.admin.rules_history()?).into_response())
}

async fn rules_version(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(version): Path<String>,
) -> ApiResult {
    api.auth.admin(&headers)?;
    Ok(Json(api.admin.rules_version(version)?).into_response())
}

async fn shadow_show(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.auth.admin(&headers)?;
    Ok(Json(api.admin.shadow()?).into_response())
}

async fn shadow_load(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Json<ShadowLoad>, JsonRejection>,
) -> ApiResult {
    api.auth.admin(&headers)?;
    let req = json_body(body)?;
    Ok(Json(api.admin.shadow_load(req.dir).await?).into_response())
}

async fn shadow_clear(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.auth.admin(&headers)?;
    Ok(Json(api.admin.shadow_clear().await?).into_response())
}

async fn explain(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Json<ExplainRequest>, JsonRejection>,
) -> ApiResult {
    api.auth.admin(&headers)?;
    let req = json_body(body)?;
    Ok(Json(api.admin.explain(req).await?).into_response())
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Invalidate {
    /// One number (E.164 with `+`); absent drops every cached record.
    #[serde(default)]
    number: Option<String>,
}

async fn crm_invalidate(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Json<Invalidate>, JsonRejection>,
) -> ApiResult {
    api.auth.admin(&headers)?;
    let req = match body {
        // No body (and so no content type) means "everything"; a body of another type is 415.
        Err(JsonRejection::MissingJsonContentType(_))
            if !headers.contains_key(header::CONTENT_TYPE) =>
        {
            Invalidate::default()
        }
        other => json_body(other)?,
    };
    Ok(Json(api.admin.crm_invalidate(req.number).await?).into_response())
}

async fn config(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.auth.admin(&headers)?;
    Ok(Json(api.admin.config()?).into_response())
}
