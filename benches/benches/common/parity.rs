//! The parity configuration (`benches/sipp/parity.toml`: the Kamailio reference's per-call work)
//! loaded and wired as the server does it, shared by the decision and rules benches.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use tollgate_core::{NumberIntel, NumberPlan};
use tollgate_server::{Loaded, Pipeline};
use tollgate_sip::trunk::Trunk;

pub struct Parity {
    pub plan: Arc<NumberPlan>,
    pub loaded: Loaded,
    /// The trunk sipp's address (127.0.0.1) maps to.
    pub trunk: Arc<Trunk>,
    pub pipeline: Pipeline,
}

pub fn parity() -> Parity {
    let plan = Arc::new(NumberPlan::load());
    let loaded = tollgate_server::config::parse(
        Path::new("parity.toml"),
        include_str!("../../sipp/parity.toml"),
        &plan,
    )
    .expect("parity.toml is valid");
    let trunk = Arc::clone(
        loaded
            .trunks
            .classify(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .expect("127.0.0.1 is the parity trunk"),
    );
    let intel = Arc::new(NumberIntel::load().expect("numbering tables"));
    let rules = tollgate_server::rule_store(&loaded).expect("rules");
    let pipeline = tollgate_server::pipeline(&loaded, Arc::clone(&plan), intel, rules);
    Parity {
        plan,
        loaded,
        trunk,
        pipeline,
    }
}
