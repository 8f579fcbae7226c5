//! Hot reload under load: sipp sends calls while the support line's rule file is swapped many
//! times, valid and invalid versions alternating. Every call is answered, every answer comes
//! whole from one of the two valid rule sets (re-routing its facts against the snapshot its
//! version names gives the same decision), and the invalid files are reported and never live.
//! Promote and rollback under the same load: the same holds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use tollgate_core::DecisionAction;

const ROUTES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/routes");

/// A copy of the example rules directory, with `support.toml` replaced by `support`.
fn rules_dir(dir: &Path, support: &str) {
    std::fs::create_dir_all(dir).unwrap();
    for e in std::fs::read_dir(ROUTES).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(dir.join("support.toml"), support).unwrap();
}

/// Replaces `support.toml` as an editor that saves atomically does: a whole file or none.
fn swap_in(dir: &Path, text: &str) {
    let tmp = dir.join(".support.toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("support.toml")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_swapped_under_load_never_fail_or_mix_a_call() {
    let base = std::env::temp_dir().join(format!("tollgate-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let a_text = std::fs::read_to_string(Path::new(ROUTES).join("support.toml")).unwrap();
    // B sends the same callers elsewhere, so an answer tells which rules made it.
    let b_text = a_text
        .replace("queue = \"support\"\n", "queue = \"general\"\n")
        .replace("name = \"support-de\"", "name = \"general-de\"");
    assert_ne!(
        a_text, b_text,
        "the variant changes the catch-all and German rules"
    );
    let bad_text = format!("{a_text}\nno_such_key = 1\n");

    // The live directory, and one directory per valid variant to build reference snapshots.
    let live = base.join("live");
    let (dir_a, dir_b, dir_bad) = (base.join("a"), base.join("b"), base.join("bad"));
    rules_dir(&live, &a_text);
    rules_dir(&dir_a, &a_text);
    rules_dir(&dir_b, &b_text);
    rules_dir(&dir_bad, &bad_text);

    let text = config_text(true, "reject").replace(ROUTES, live.to_str().unwrap());
    let cfg = tollgate_server::config::parse(Path::new("test.toml"), &text, &plan()).unwrap();
    let load = |d: &PathBuf| tollgate_server::rules::load_dir(d, &cfg.rule_settings);
    let snap_a = load(&dir_a).unwrap();
    let snap_b = load(&dir_b).unwrap();
    let bad_errors = load(&dir_bad).unwrap_err();
    assert!(
        bad_errors.iter().any(|e| e.key == "no_such_key"),
        "{bad_errors:?}"
    );
    assert_ne!(snap_a.version, snap_b.version);
    let version_b = snap_b.version.clone();
    let mut snapshots = HashMap::new();
    snapshots.insert(snap_a.version.clone(), snap_a);
    snapshots.insert(snap_b.version.clone(), snap_b);

    let run = start(&text, Duration::ZERO, |_| {}).await;
    let store = std::sync::Arc::clone(&run.recorder().inner.rules);
    let version_a = store.current().version.clone();
    assert!(snapshots.contains_key(&version_a));

    // Calls: US, UK and German callers to the support line (the one being swapped) and sales.
    let dir = base.join("sipp");
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("SEQUENTIAL\n");
    let anis = ["1212555", "44207260", "4930123"];
    const CALLS: usize = 1500;
    for i in 0..CALLS {
        let dnis = if i % 5 == 4 {
            "18885550101"
        } else {
            "18005550100"
        };
        writeln!(csv, "{}{:04};{dnis};{:07}", anis[i % 3], i, i).unwrap();
    }
    std::fs::write(dir.join("calls.csv"), csv).unwrap();
    let target = run.udp.to_string();
    let d = dir.clone();
    let calls = tokio::task::spawn_blocking(move || sipp(&target, &d, CALLS, 300, 400, "60s"));

    // Swap while sipp runs: B, bad, A, bad, ... Each reload is checked as it happens.
    let (mut applied, mut refused) = (0usize, 0usize);
    let mut step = 0usize;
    while !calls.is_finished() {
        let (text, want) = match step % 4 {
            0 => (&b_text, Some(&version_b)),
            2 => (&a_text, Some(&version_a)),
            _ => (&bad_text, None),
        };
        let before = store.current().version.clone();
        swap_in(&live, text);
        match (store.reload(), want) {
            (Ok(v), Some(want)) => {
                assert_eq!(&v, want);
                assert_eq!(&store.current().version, want);
                applied += 1;
            }
            (Err(errors), None) => {
                assert!(
                    errors
                        .iter()
                        .any(|e| e.key == "no_such_key" && e.file.ends_with("support.toml")),
                    "{errors:?}"
                );
                assert_eq!(
                    store.current().version,
                    before,
                    "a bad file never goes live"
                );
                refused += 1;
            }
            (got, want) => panic!("reload gave {got:?}, expected {want:?}"),
        }
        step += 1;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let out = calls.await.unwrap();
    assert_eq!(out.failed, 0, "failed calls; stderr: {}", out.stderr);
    assert_eq!(out.successful, CALLS);
    assert!(
        applied >= 20 && refused >= 20,
        "too few swaps to mean anything: {applied} applied, {refused} refused"
    );

    // Every answer is exactly what one whole snapshot gives for that call's facts.
    let decisions = run.recorder().decisions.lock().unwrap().clone();
    assert_eq!(decisions.len(), CALLS);
    let mut by_version: HashMap<&str, usize> = HashMap::new();
    for (facts, decision) in &decisions {
        let snap = snapshots
            .get(decision.version.as_str())
            .unwrap_or_else(|| panic!("answer from an unknown rule set {}", decision.version));
        let again = tollgate_router::route(facts, snap, monday_10am_new_york());
        assert_eq!(&again, decision, "call {} mixes rule sets", facts.call_id);
        assert!(matches!(decision.action, DecisionAction::Route(_)));
        *by_version.entry(decision.version.as_str()).or_default() += 1;
    }
    assert_eq!(
        by_version.len(),
        2,
        "calls were answered by both rule sets: {by_version:?}"
    );
    let _ = std::fs::remove_dir_all(&base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_changes_and_sighup_reload_and_bad_files_never_go_live() {
    // SIGHUP's default action ends the process: take it over before anything sends one.
    let _hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).unwrap();
    let base = std::env::temp_dir().join(format!("tollgate-watch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let a_text = std::fs::read_to_string(Path::new(ROUTES).join("support.toml")).unwrap();
    let b_text = a_text.replace("queue = \"support\"\n", "queue = \"general\"\n");
    let live = base.join("live");
    rules_dir(&live, &a_text);
    let text = config_text(true, "reject").replace(ROUTES, live.to_str().unwrap());
    let cfg = tollgate_server::config::parse(Path::new("test.toml"), &text, &plan()).unwrap();
    let store = tollgate_server::rule_store(&cfg).unwrap();
    let version_a = store.current().version.clone();

    // A saved file is picked up by the watcher.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(std::sync::Arc::clone(&store).watch(
        Duration::from_millis(50),
        async move {
            let _ = stopped.await;
        },
    ));
    // The watcher notes the directory when its task first runs, which on a busy machine may
    // be after a first save: save again (a different length each time) until it reloads.
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut saves = 0usize;
    while store.current().version == version_a {
        assert!(
            tokio::time::Instant::now() < until,
            "the watcher never picked up {saves} saves"
        );
        saves += 1;
        swap_in(&live, &format!("{b_text}\n#{}\n", "-".repeat(saves)));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let version_b = store.current().version.clone();
    // A broken save is reported and the rules from the last good one keep routing.
    swap_in(&live, &format!("{b_text}\n[oops\n"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.current().version, version_b);
    stop.send(()).unwrap();
    watcher.await.unwrap();

    // With polling out of the picture (one hour), SIGHUP alone reloads.
    swap_in(&live, &a_text);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(std::sync::Arc::clone(&store).watch(
        Duration::from_secs(3600),
        async move {
            let _ = stopped.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        store.current().version,
        version_b,
        "no reload without a signal"
    );
    let pid = std::process::id().to_string();
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.current().version != version_a {
        assert!(tokio::time::Instant::now() < until, "SIGHUP did not reload");
        Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(()).unwrap();
    watcher.await.unwrap();
    let _ = std::fs::remove_dir_all(&base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_and_rollback_under_load_never_fail_or_mix_a_call() {
    let base = std::env::temp_dir().join(format!("tollgate-promote-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let a_text = std::fs::read_to_string(Path::new(ROUTES).join("support.toml")).unwrap();
    let b_text = a_text
        .replace("queue = \"support\"\n", "queue = \"general\"\n")
        .replace("name = \"support-de\"", "name = \"general-de\"");
    let bad_text = format!("{a_text}\nno_such_key = 1\n");
    let (live, dir_a, dir_b, dir_bad) = (
        base.join("live"),
        base.join("a"),
        base.join("b"),
        base.join("bad"),
    );
    rules_dir(&live, &a_text);
    rules_dir(&dir_a, &a_text);
    rules_dir(&dir_b, &b_text);
    rules_dir(&dir_bad, &bad_text);
    let text = config_text(true, "reject").replace(ROUTES, live.to_str().unwrap());
    let cfg = tollgate_server::config::parse(Path::new("test.toml"), &text, &plan()).unwrap();
    let load = |d: &PathBuf| tollgate_server::rules::load_dir(d, &cfg.rule_settings);
    let (snap_a, snap_b) = (load(&dir_a).unwrap(), load(&dir_b).unwrap());
    let (version_a, version_b) = (snap_a.version.clone(), snap_b.version.clone());
    assert_ne!(version_a, version_b);
    let mut snapshots = HashMap::new();
    snapshots.insert(version_a.clone(), snap_a);
    snapshots.insert(version_b.clone(), snap_b);

    let run = start(&text, Duration::ZERO, |_| {}).await;
    let store = std::sync::Arc::clone(&run.recorder().inner.rules);
    assert_eq!(store.current().version, version_a);

    let dir = base.join("sipp");
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("SEQUENTIAL\n");
    let anis = ["1212555", "44207260", "4930123"];
    const CALLS: usize = 1500;
    for i in 0..CALLS {
        let dnis = if i % 5 == 4 {
            "18885550101"
        } else {
            "18005550100"
        };
        writeln!(csv, "{}{:04};{dnis};{:07}", anis[i % 3], i, i).unwrap();
    }
    std::fs::write(dir.join("calls.csv"), csv).unwrap();
    let target = run.udp.to_string();
    let d = dir.clone();
    let calls = tokio::task::spawn_blocking(move || sipp(&target, &d, CALLS, 300, 400, "60s"));

    // While sipp runs: shadow B, a bad shadow (refused: B stays the shadow), promote (B
    // live), rollback (A live), and again. Each step is checked as it happens.
    let (mut promoted, mut rolled_back, mut refused) = (0usize, 0usize, 0usize);
    let mut step = 0usize;
    while !calls.is_finished() {
        match step % 4 {
            0 => {
                assert_eq!(store.load_shadow(&dir_b).unwrap(), version_b);
            }
            1 => {
                let errors = store.load_shadow(&dir_bad).unwrap_err();
                assert!(errors.iter().any(|e| e.key == "no_such_key"), "{errors:?}");
                assert_eq!(store.shadow().as_ref().unwrap().version, version_b);
                assert_eq!(
                    store.current().version,
                    version_a,
                    "a bad shadow never goes live"
                );
                refused += 1;
            }
            2 => {
                let e = store.promote("test", "under load").unwrap();
                assert_eq!(e.version, version_b);
                assert_eq!(store.current().version, version_b);
                assert!(
                    store.shadow().is_none(),
                    "the promoted shadow is the live rules"
                );
                promoted += 1;
            }
            _ => {
                let e = store.rollback("test", "back").unwrap();
                assert_eq!(e.version, version_a);
                assert_eq!(store.current().version, version_a);
                rolled_back += 1;
            }
        }
        step += 1;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let out = calls.await.unwrap();
    assert_eq!(out.failed, 0, "failed calls; stderr: {}", out.stderr);
    assert_eq!(out.successful, CALLS);
    assert!(
        promoted >= 10 && rolled_back >= 10 && refused >= 10,
        "too few swaps: {promoted} promoted, {rolled_back} rolled back, {refused} refused"
    );
    // The history is bounded and holds the last swaps in order.
    let history = store.history();
    assert_eq!(history.len(), tollgate_server::rules::MAX_HISTORY);
    let last = history.last().unwrap();
    assert!(last.action == "promote" || last.action == "rollback");
    assert_eq!(last.version, store.current().version);
    assert_eq!(last.by, "test");

    let decisions = run.recorder().decisions.lock().unwrap().clone();
    assert_eq!(decisions.len(), CALLS);
    let mut by_version: HashMap<&str, usize> = HashMap::new();
    for (facts, decision) in &decisions {
        let snap = snapshots
            .get(decision.version.as_str())
            .unwrap_or_else(|| panic!("answer from an unknown rule set {}", decision.version));
        let again = tollgate_router::route(facts, snap, monday_10am_new_york());
        assert_eq!(&again, decision, "call {} mixes rule sets", facts.call_id);
        *by_version.entry(decision.version.as_str()).or_default() += 1;
    }
    assert_eq!(
        by_version.len(),
        2,
        "both versions answered: {by_version:?}"
    );
    let _ = std::fs::remove_dir_all(&base);
}
