//! Everything the server does with untrusted bytes before routing must never panic:
//! TCP framing, message splitting, request validation and CallFacts extraction.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tollgate_core::{AniSource, DnisSource, NumberPlan};
use tollgate_sip::extract::{extract, Emergency};
use tollgate_sip::message::{frame, Message, Request};
use tollgate_sip::trunk::Trunk;

struct Env {
    plan: NumberPlan,
    trunk: Trunk,
    emergency: Emergency,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let plan = NumberPlan::load();
        let region = plan.region("US").expect("US is in the metadata").clone();
        let trunk = Trunk {
            name: "fuzz-us".into(),
            cidrs: Vec::new(),
            // Trusted, so every identity header (PAI, RPID, P-Charge-Info, Identity) is read.
            trusted: true,
            ani_precedence: vec![AniSource::Pai, AniSource::Rpid, AniSource::From],
            dnis_precedence: vec![
                DnisSource::Diversion,
                DnisSource::HistoryInfo,
                DnisSource::PCalledPartyId,
                DnisSource::RequestUri,
                DnisSource::To,
            ],
            region,
            tls_peers: Vec::new(),
        };
        Env {
            plan,
            trunk,
            emergency: Emergency::default(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let env = env();
    let _ = frame(data);
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    if !msg.is_request() {
        return;
    }
    // TCP (stream) validation first, on a copy; then UDP (datagram), which truncates the body.
    let _ = Request::from_message(msg.clone(), false);
    if let Ok(req) = Request::from_message(msg, true) {
        let facts = extract(&req, &env.trunk, &env.plan, &env.emergency);
        std::hint::black_box(facts);
    }
});
