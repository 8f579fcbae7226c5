//! Tollgate's HTTP API: screen pops to agent desktops (SSE, WebSocket, webhooks, Redis fan-out
//! across nodes), admin endpoints behind a trait the server implements, health, metrics, the
//! OpenAPI document and the agent desktop page.
//!
//! The call path touches this crate only through [`Publisher::publish`], a `try_send` that
//! never waits: a pop never delays a SIP answer.

mod admin;
mod auth;
mod error;
mod hub;
mod pop;
mod redis_bus;
mod routes;
mod webhook;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use admin::{
    Admin, AdminError, AdminResult, BoxFuture, ExplainProfile, ExplainRequest, ListAdd, NoAdmin,
    RulesSwap, ShadowLoad,
};
pub use auth::{Principal, QueueFilter, Scope, Secret, Token};
pub use error::{ApiError, StartError};
pub use hub::{default_node, HubConfig, PopEvent, Publisher};
pub use metrics_exporter_prometheus::PrometheusHandle;
pub use pop::{Crm, Geo, Line, Presented, Profile, Risk, ScreenPop, Signal};
pub use redis_bus::{BusConfig, BusTarget};
pub use webhook::{signature, WebhookConfig, WebhookSettings};

/// The OpenAPI 3 document (checked in as `openapi.json`, served at `/v1/openapi.json`).
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Everything the API needs from configuration.
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    pub hub: HubConfig,
    pub tokens: Vec<Token>,
    /// How long a stream ticket is valid.
    pub ticket_ttl: Duration,
    pub webhooks: Vec<WebhookConfig>,
    pub webhook_settings: WebhookSettings,
    /// Fan-out through Redis; `None` keeps pops on this node.
    pub bus: Option<BusConfig>,
}

/// The running API's state: the pop hub and its background tasks, the tokens, the admin seam.
#[derive(Debug, Clone)]
pub struct Api {
    pub(crate) hub: Arc<hub::Hub>,
    pub(crate) auth: Arc<auth::Auth>,
    pub(crate) admin: Arc<dyn Admin>,
    pub(crate) metrics: Option<PrometheusHandle>,
    publisher: Publisher,
}

impl Api {
    /// Starts the hub, webhook workers and Redis fan-out (needs a Tokio runtime). Listening is
    /// [`Api::run`]'s job, so the server can publish before the listener is up.
    pub fn start(
        cfg: ApiConfig,
        admin: Arc<dyn Admin>,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Self, StartError> {
        let ttl = if cfg.ticket_ttl.is_zero() {
            Duration::from_secs(60)
        } else {
            cfg.ticket_ttl
        };
        let auth = auth::Auth::new(&cfg.tokens, ttl).map_err(StartError::Tokens)?;
        let hub = hub::Hub::new(cfg.hub);
        let webhooks =
            webhook::Webhooks::start(cfg.webhooks, cfg.webhook_settings, hub.stopping())?;
        let bus = cfg
            .bus
            .as_ref()
            .map(|b| redis_bus::start(b, &hub))
            .transpose()?;
        let publisher = hub::spawn(&hub, hub::Outlets { webhooks, bus });
        Ok(Self {
            hub,
            auth: Arc::new(auth),
            admin,
            metrics,
            publisher,
        })
    }

    /// The call path's handle.
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// Local stream subscribers right now (for tests and the fan-out benchmark).
    pub fn subscribers(&self) -> usize {
        self.hub.subscribers()
    }

    /// A stored pop's JSON by call reference.
    pub fn pop(&self, call_ref: &str) -> Option<Arc<PopEvent>> {
        self.hub.get(call_ref)
    }

    /// A live feed of every pop this node delivers (local and from other nodes).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<PopEvent>> {
        self.hub.subscribe()
    }

    /// The axum router with every endpoint.
    pub fn router(&self) -> axum::Router {
        routes::build(self.clone()).0
    }

    /// `(method, path)` of every route the router serves, in OpenAPI path syntax.
    pub fn routes(&self) -> Vec<(&'static str, &'static str)> {
        routes::build(self.clone()).1
    }

    /// Serves until `shutdown`, then ends every stream and the background tasks.
    pub async fn run(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let hub = Arc::clone(&self.hub);
        let router = self.router();
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                // Streams end on this; without it graceful shutdown would wait for them forever.
                hub.stop();
            })
            .await;
        self.hub.stop();
        result
    }
}
