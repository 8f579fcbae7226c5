//! Shared test support.
pub mod crm;
