//! Webhooks: each pop POSTed as JSON to every hook whose queues match, signed with
//! HMAC-SHA256, retried with exponential backoff; a bounded queue drops (and counts) what it
//! cannot hold.
//!
//! Signature: `X-Tollgate-Signature: sha256=<hex>` where the MAC is over
//! `"<X-Tollgate-Timestamp>.<body>"` with the hook's secret, so a receiver can reject replays
//! by the timestamp.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};

use crate::auth::{hex, Secret};
use crate::error::StartError;
use crate::hub::PopEvent;

/// One webhook.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub name: String,
    pub url: String,
    pub secret: Secret,
    /// Only pops for these queues; empty means every queue.
    pub queues: Vec<String>,
}

/// Delivery limits shared by every hook.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Deliveries waiting; when full the newest is dropped and counted.
    pub queue: usize,
    /// Tries per delivery, the first included.
    pub attempts: u32,
    /// Wait before the second try; doubles each time up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Per request.
    pub timeout: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            queue: 1024,
            attempts: 5,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            concurrency: 8,
        }
    }
}

/// The header value for a body signed at `timestamp` (unix seconds).
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("sha256={}", hex(ctx.sign().as_ref()))
}

struct Job {
    hook: Arc<WebhookConfig>,
    ev: Arc<PopEvent>,
}

/// The enqueue side, held by the hub task.
#[derive(Clone)]
pub(crate) struct Webhooks {
    hooks: Arc<[Arc<WebhookConfig>]>,
    tx: mpsc::Sender<Job>,
}

impl Webhooks {
    pub(crate) fn start(
        hooks: Vec<WebhookConfig>,
        settings: WebhookSettings,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Option<Self>, StartError> {
        if hooks.is_empty() {
            return Ok(None);
        }
        for h in &hooks {
            let ok = h.url.starts_with("http://") || h.url.starts_with("https://");
            if !ok || reqwest::Url::parse(&h.url).is_err() {
                return Err(StartError::Webhook {
                    name: h.name.clone(),
                    message: format!("{:?} is not an http(s) URL", h.url),
                });
            }
        }
        let client = client(&settings).map_err(|message| StartError::Webhook {
            name: "*".into(),
            message,
        })?;
        let (tx, mut rx) = mpsc::channel::<Job>(settings.queue.max(1));
        let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        let settings = Arc::new(settings);
        tokio::spawn(async move {
            loop {
                let job = tokio::select! {
                    j = rx.recv() => match j { Some(j) => j, None => break },
                    _ = crate::hub::stopped(&mut stop) => break,
                };
                let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                    break;
                };
                let client = client.clone();
                let settings = Arc::clone(&settings);
                let mut stop = stop.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = deliver(&client, &settings, &job) => {}
                        _ = crate::hub::stopped(&mut stop) => {}
                    }
                    drop(permit);
                });
            }
        });
        Ok(Some(Self {
            hooks: hooks.into_iter().map(Arc::new).collect(),
            tx,
        }))
    }

    pub(crate) fn enqueue(&self, ev: &Arc<PopEvent>) {
        for hook in self.hooks.iter() {
            if !hook.queues.is_empty() && !hook.queues.iter().any(|q| *q == ev.queue) {
                continue;
            }
            let job = Job {
                hook: Arc::clone(hook),
                ev: Arc::clone(ev),
            };
            if self.tx.try_send(job).is_err() {
                metrics::counter!("tollgate_webhook_dropped_total").increment(1);
                tracing::warn!(webhook = %hook.name, call_ref = %ev.call_ref, "webhook queue full: pop dropped");
            }
        }
    }
}

fn client(settings: &WebhookSettings) -> Result<reqwest::Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
        .map_err(|e| format!("TLS setup: {e}"))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}

async fn deliver(client: &reqwest::Client, settings: &WebhookSettings, job: &Job) {
    let body = job.ev.json().as_bytes().to_vec();
    let mut wait = settings.backoff;
    let attempts = settings.attempts.max(1);
    for attempt in 1..=attempts {
        let ts = jiff::Timestamp::now().as_second().max(0).unsigned_abs();
        let result = client
            .post(&job.hook.url)
            .header("content-type", "application/json")
            .header("x-tollgate-event", "pop")
            .header("x-tollgate-call-ref", &job.ev.call_ref)
            .header("x-tollgate-attempt", attempt.to_string())
            .header("x-tollgate-timestamp", ts.to_string())
            .header(
                "x-tollgate-signature",
                signature(job.hook.secret.expose(), ts, &body),
            )
            .body(body.clone())
            .send()
            .await;
        let (retry, what) = match result {
            Ok(r) if r.status().is_success() => {
                metrics::counter!("tollgate_webhook_deliveries_total", "result" => "ok")
                    .increment(1);
                return;
            }
            Ok(r) => {
                let s = r.status();
                // A 4xx other than timeout/too-many says the request itself is wrong.
                let retry = s.is_server_error() || s.as_u16() == 408 || s.as_u16() == 429;
                (retry, format!("HTTP {s}"))
            }
            Err(e) => (true, error_kind(&e)),
        };
        metrics::counter!("tollgate_webhook_deliveries_total", "result" => "error").increment(1);
        tracing::warn!(webhook = %job.hook.name, call_ref = %job.ev.call_ref, attempt, error = %what, "webhook delivery failed");
        if !retry || attempt == attempts {
            metrics::counter!("tollgate_webhook_gave_up_total").increment(1);
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(settings.max_backoff);
    }
}

/// Never the URL: it may carry credentials.
fn error_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else {
        "request".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2 style check through ring, over "1.{}".
        let s = signature("key", 1, b"{}");
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64);
        assert_ne!(s, signature("key", 2, b"{}"));
        assert_ne!(s, signature("other", 1, b"{}"));
    }
}
