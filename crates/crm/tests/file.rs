#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! The embedded file directory with real files: the shipped example, reloads, bad rows.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tollgate_core::{LookupStatus, E164};
use tollgate_crm::{FileFormat, Kind, Lookup, LookupConfig, LookupError};

fn ani(digits: &str) -> E164 {
    E164::from_digits(digits).unwrap()
}

fn file_config(path: &str, poll_ms: u64) -> LookupConfig {
    let mut cfg = LookupConfig::default();
    cfg.file.path = PathBuf::from(path);
    cfg.file.poll_ms = poll_ms;
    cfg
}

/// Replaces the file the way editors and deploy tools do: write aside, then rename over it.
fn replace(path: &Path, text: &str) {
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// Polls `check` every 20 ms for up to 5 s (the watcher polls every 50 ms in these tests).
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

const HEADER: &str = "ani,customer_id,name,tier,tags,open_cases,segment\n";

#[tokio::test]
async fn shipped_example_directory_loads() {
    let config_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    // An empty [crm] section: kind "file", directory.csv beside the config.
    let cfg: LookupConfig = toml::from_str("").unwrap();
    let lookup = Lookup::from_config(&cfg, &config_dir).unwrap();
    assert_eq!(lookup.kind(), Kind::File);

    let (status, profile) = lookup.lookup(&ani("4930123456")).await;
    assert_eq!(status, LookupStatus::Found);
    let jonas = profile.unwrap();
    assert_eq!(jonas.customer_id, "C-1001");
    assert_eq!(jonas.language.as_deref(), Some("de"));
    assert_eq!(jonas.tags, ["vip", "logistics"]);
    assert_eq!(jonas.attributes["segment"], "smb");

    let (status, profile) = lookup.lookup(&ani("12125550100")).await;
    assert_eq!(status, LookupStatus::Found);
    let maria = profile.unwrap();
    assert_eq!(maria.tier.as_deref(), Some("platinum"));
    assert_eq!(maria.open_cases, Some(1));

    assert_eq!(
        lookup.lookup(&ani("4930999999")).await,
        (LookupStatus::NotFound, None)
    );
}

#[tokio::test]
async fn reloads_when_the_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("directory.csv");
    std::fs::write(
        &path,
        format!("{HEADER}+4930123456,C-1,Jonas Weber,gold,vip,1,smb\n"),
    )
    .unwrap();
    let lookup = Lookup::from_config(&file_config("directory.csv", 50), dir.path()).unwrap();
    let name = |l: &Lookup| {
        let l = l.clone();
        async move { l.lookup(&ani("4930123456")).await.1.and_then(|p| p.name) }
    };
    assert_eq!(name(&lookup).await.as_deref(), Some("Jonas Weber"));
    assert_eq!(
        lookup.lookup(&ani("12125550100")).await.0,
        LookupStatus::NotFound
    );

    replace(
        &path,
        &format!(
            "{HEADER}+4930123456,C-1,Jonas B. Weber,platinum,vip,1,smb\n\
             +12125550100,C-2,Maria Lopez,gold,,0,enterprise\n"
        ),
    );
    let changed =
        eventually(|| futures_now(lookup.lookup(&ani("12125550100"))).0 == LookupStatus::Found)
            .await;
    assert!(changed, "the new record appeared");
    assert_eq!(name(&lookup).await.as_deref(), Some("Jonas B. Weber"));
    assert!(lookup.last_reload_error().is_none());
}

#[tokio::test]
async fn bad_row_on_reload_is_reported_with_its_line_and_the_old_data_stays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("directory.csv");
    std::fs::write(
        &path,
        format!("{HEADER}+4930123456,C-1,Jonas Weber,gold,vip,1,smb\n"),
    )
    .unwrap();
    let lookup = Lookup::from_config(&file_config("directory.csv", 50), dir.path()).unwrap();

    // Line 3 has a word where open_cases wants a number.
    replace(
        &path,
        &format!(
            "{HEADER}+4930123456,C-1,Jonas Weber,gold,vip,1,smb\n\
             +12125550100,C-2,Maria Lopez,gold,,several,enterprise\n"
        ),
    );
    assert!(eventually(|| lookup.last_reload_error().is_some()).await);
    let error = lookup.last_reload_error().unwrap();
    let text = error.to_string();
    assert!(text.contains("directory.csv"), "{text}");
    assert!(text.contains("line 3, column 6: open_cases:"), "{text}");
    match &error {
        LookupError::File(f) => {
            assert_eq!(f.problems.len(), 1);
            assert_eq!(f.problems[0].line, Some(3));
            assert_eq!(f.problems[0].field.as_deref(), Some("open_cases"));
        }
        other => panic!("expected a file error, got {other:?}"),
    }
    // The old data is still served; the bad file's good rows did not half-apply.
    assert_eq!(
        lookup.lookup(&ani("4930123456")).await.0,
        LookupStatus::Found
    );
    assert_eq!(
        lookup.lookup(&ani("12125550100")).await.0,
        LookupStatus::NotFound
    );
    // An explicit reload (the admin command) reports the same problem.
    assert_eq!(lookup.reload().unwrap_err(), error);

    // Fixed: the watcher picks it up and the error clears.
    replace(
        &path,
        &format!(
            "{HEADER}+4930123456,C-1,Jonas Weber,gold,vip,1,smb\n\
             +12125550100,C-2,Maria Lopez,gold,,3,enterprise\n"
        ),
    );
    assert!(eventually(|| lookup.last_reload_error().is_none()).await);
    assert_eq!(
        lookup.lookup(&ani("12125550100")).await.0,
        LookupStatus::Found
    );
}

#[tokio::test]
async fn bad_file_at_start_up_is_an_error_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("directory.csv"),
        format!(
            "{HEADER}+4930123456,C-1,Jonas,gold,vip,1,smb\n\
             030 123456,C-2,Local Form,,,,\n\
             +4930123456,C-3,Twice,,,,\n"
        ),
    )
    .unwrap();
    let error = Lookup::from_config(&file_config("directory.csv", 0), dir.path()).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("line 3, column 1: ani:"), "{text}");
    assert!(
        text.contains("line 4: ani: +4930123456 is listed twice (line 2)"),
        "{text}"
    );

    let missing = Lookup::from_config(&file_config("nope.csv", 0), dir.path()).unwrap_err();
    assert!(missing.to_string().contains("nope.csv"), "{missing}");
}

#[tokio::test]
async fn json_directory_with_attributes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("callers.json"),
        r#"[
  {"ani": "+4930123456", "customer_id": "C-1001", "name": "Jonas Weber", "tags": ["vip"],
   "open_cases": 2, "attributes": {"segment": "smb", "seats": 12}},
  {"ani": "+1 212 555 0100", "customer_id": "C-2001", "language": "en"}
]"#,
    )
    .unwrap();
    let lookup = Lookup::from_config(&file_config("callers.json", 0), dir.path()).unwrap();
    let (status, profile) = lookup.lookup(&ani("4930123456")).await;
    assert_eq!(status, LookupStatus::Found);
    let p = profile.unwrap();
    assert_eq!(p.open_cases, Some(2));
    assert_eq!(p.attributes["seats"], "12");
    assert_eq!(
        lookup.lookup(&ani("12125550100")).await.0,
        LookupStatus::Found
    );

    std::fs::write(
        dir.path().join("bad.json"),
        "[\n  {\"ani\": \"+4930123456\", \"customer_id\": \"C-1\"},\n  {\"ani\": \"+4930123457\", \"customer_id\": \"C-2\", \"nmae\": \"typo\"}\n]",
    )
    .unwrap();
    let mut cfg = file_config("bad.json", 0);
    cfg.file.format = Some(FileFormat::Json);
    let text = Lookup::from_config(&cfg, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("line 3, column") && text.contains("nmae"),
        "{text}"
    );
}

#[tokio::test]
async fn region_normalizes_national_numbers_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("directory.csv"),
        "ani,customer_id\n030 123456,C-1\n+1 212 555 0100,C-2\n",
    )
    .unwrap();
    let mut cfg = file_config("directory.csv", 0);
    cfg.file.region = Some("DE".into());
    let lookup = Lookup::from_config(&cfg, dir.path()).unwrap();
    assert_eq!(
        lookup.lookup(&ani("4930123456")).await.0,
        LookupStatus::Found
    );
    assert_eq!(
        lookup.lookup(&ani("12125550100")).await.0,
        LookupStatus::Found
    );
}

/// The file directory answers from memory: its lookup future is ready on first poll.
fn futures_now<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = std::task::Waker::noop();
    match f.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a file lookup should never wait"),
    }
}
