//! The server config parser (`tollgate_server::config::parse_with_rules`, what `parse` runs
//! with the rules directory's check left out, so nothing reads a file or opens a socket) never
//! panics, every error it gives names the file and a key or a line, and a line is within the
//! text.
//!
//! Input: the config text (UTF-8; other input is not a config).
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tollgate_core::NumberPlan;
use tollgate_server::config::parse_with_rules;

fn plan() -> &'static NumberPlan {
    static PLAN: OnceLock<NumberPlan> = OnceLock::new();
    PLAN.get_or_init(NumberPlan::load)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/fuzz/tollgate.toml");
    match parse_with_rules(path, text, plan(), |_, _| Vec::new()) {
        Ok(loaded) => {
            assert!(!loaded.udp.is_empty() || !loaded.tcp.is_empty());
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error without a problem");
            let lines = text.lines().count().max(1);
            for e in &errors.0 {
                assert_eq!(e.file, path, "{e:?}");
                assert!(
                    !(e.key.is_empty() || e.key == "-") || e.line.is_some(),
                    "neither a key nor a line: {e:?}"
                );
                if let Some(l) = e.line {
                    assert!(l >= 1 && l <= lines + 1, "line {l} of {lines}: {e:?}");
                }
                let _ = e.to_string();
            }
        }
    }
});
