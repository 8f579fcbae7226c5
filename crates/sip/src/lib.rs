//! Tollgate's SIP front end: a strict zero-copy parser, UDP, TCP and TLS transport, RFC 3261 server
//! transactions for a redirect server, trunk trust, and CallFacts extraction.
//!
//! It knows nothing of Redis, HTTP or routing rules: every INVITE's facts go to a [`CallHandler`]
//! and its decision comes back as a response.

pub mod extract;
pub mod hdr;
pub mod identity;
pub mod message;
pub mod response;
mod scan;
pub mod server;
pub mod tls;
pub mod trunk;
pub mod uri;

pub use server::{
    bind, precheck, Call, CallHandler, Context, EarlyAnswer, EarlyReason, Limits, Listeners,
    Server, SipConfig, TransportStats, MAX_FINAL_RETRANSMITS, SUPPORTED_OPTIONS,
};
