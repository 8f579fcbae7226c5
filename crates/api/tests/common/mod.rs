//! Test clients for the API: SSE over a real HTTP connection, WebSocket, and pop builders.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(10);

// The SSE, WebSocket and HTTP clients, shared with the server's end-to-end tests.
mod clients;
pub use clients::*;

// The pop builder, shared with benches/benches/pops.rs.
mod pop;
pub use pop::pop;

pub async fn get(url: String) -> reqwest::Response {
    http().get(url).send().await.unwrap()
}

pub fn base(addr: SocketAddr) -> String {
    format!("http://{addr}")
}
