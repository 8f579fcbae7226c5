//! The deploy artifacts against a real node: the Grafana dashboard and the Prometheus alerts
//! name only metrics a node exports (scraped from `/metrics`), the container config passes
//! `tollgate check` and agrees with the Kubernetes manifests, rules reload when a ConfigMap
//! volume swaps its `..data` link, and `/readyz` turns 503 while a node drains.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod http_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use http_support::*;

const DNIS: &str = "+18005550199";
const US: &str = "+12125550123";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every `tollgate_…` metric name in a text (PromQL in YAML or JSON).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("tollgate_") {
        let start = i + at;
        let boundary =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start;
        while end < b.len()
            && (b[end].is_ascii_lowercase() || b[end].is_ascii_digit() || b[end] == b'_')
        {
            end += 1;
        }
        if boundary {
            out.insert(text[start..end].to_owned());
        }
        i = end;
    }
    out
}

/// The metric names of a Prometheus text exposition (samples, not comments).
fn exported(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

fn node_text(extra: &str) -> String {
    format!(
        "{}\n[crm]\nkind = \"file\"\n[crm.file]\npath = \"{}\"\n\n[risk]\nstore = \"memory\"\nlist_file = \"lists.json\"\n{extra}",
        config(""),
        repo().join("config/directory.csv").display()
    )
}

#[test]
fn the_name_extractor_finds_names_and_only_names() {
    let names = metric_names(
        r#"sum(rate(tollgate_calls_total{outcome="reject"}[5m])) / x_tollgate_no + tollgate_b_bucket"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["tollgate_b_bucket", "tollgate_calls_total"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_name_only_metrics_a_node_exports() {
    // With a TLS listener too, so the certificate's expiry gauge is there to be named.
    let pki = tempfile::tempdir().unwrap();
    let (cert, key) =
        tollgate_testkit::Ca::new("deploy ca").write_leaf(pki.path(), "node", "tollgate.test");
    let tls = format!(
        "[sip.tls]\nlisten = [\"127.0.0.1:0\"]\ncert = \"{}\"\nkey = \"{}\"\nreload_poll_ms = 100\n\n[[trunk]]",
        cert.display(),
        key.display()
    );
    let node = Process::start(&node_text("").replacen("[[trunk]]", &tls, 1));
    ready(&node.base()).await;
    // A routed call and a rejected one, so the per-call series exist.
    let r = call(node.udp, DNIS, US, "deploy-1").await;
    assert!(r.starts_with("SIP/2.0 302"), "{r}");
    let (s, _) = json(
        http()
            .post(format!("{}/v1/admin/lists/block", node.base()))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(r#"{"pattern": "+12125550666", "reason": "test"}"#),
    )
    .await;
    assert_eq!(s, 201);
    // The engine picks the list change up at its next refresh.
    let start = Instant::now();
    let mut n = 1;
    loop {
        n += 1;
        let r = call(node.udp, DNIS, "+12125550666", &format!("deploy-{n}")).await;
        if r.starts_with("SIP/2.0 603") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never blocked: {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let scrape = http()
        .get(format!("{}/metrics", node.base()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let have = exported(&scrape);
    assert!(have.contains("tollgate_calls_total"), "{scrape}");
    for file in [
        "deploy/grafana/tollgate-dashboard.json",
        "deploy/prometheus/alerts.yml",
    ] {
        let text = read(file);
        let wanted = metric_names(&text);
        assert!(wanted.len() >= 8, "{file} names only {wanted:?}");
        let missing: Vec<_> = wanted.iter().filter(|n| !have.contains(*n)).collect();
        assert!(
            missing.is_empty(),
            "{file} queries metrics a node does not export: {missing:?}\nexported: {have:?}"
        );
    }
    // The dashboard is valid JSON with its panels' queries where Grafana reads them.
    let dash: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/tollgate-dashboard.json")).unwrap();
    let exprs: Vec<&str> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap())
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
}

/// The queue of a 302's Contact: `<sip:QUEUE@…`.
fn queue(resp: &str) -> String {
    let c = header(resp, "Contact").unwrap_or_else(|| panic!("no Contact: {resp}"));
    c.trim_start_matches("<sip:")
        .split('@')
        .next()
        .unwrap()
        .to_owned()
}

fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    resp.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A Kubernetes ConfigMap volume: the files are links into `..data`, a link to a timestamped
/// directory that the kubelet replaces atomically on every update.
fn configmap_version(dir: &Path, version: &str, queue: &str) {
    let data = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("default.toml"),
        format!("name = \"default\"\n[[rule]]\nname = \"everyone\"\nqueue = \"{queue}\"\n"),
    )
    .unwrap();
    std::fs::write(
        data.join("queues.toml"),
        "queues = [\"general\", \"general-de\", \"emergency\"]\n",
    )
    .unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for f in ["default.toml", "queues.toml"] {
        let link = dir.join(f);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{f}"), &link).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_reload_when_a_configmap_volume_swaps_its_data_link() {
    let scratch = tempfile::tempdir().unwrap();
    let rules = scratch.path().join("routes");
    std::fs::create_dir_all(&rules).unwrap();
    configmap_version(&rules, "2026_12_04_1", "general");
    let text = config("").replace(
        &format!("rules_dir = \"{}\"", routes_dir().display()),
        &format!("rules_dir = \"{}\"", rules.display()),
    );
    assert!(text.contains(&rules.display().to_string()));
    let node = Process::start(&text);
    let r = call(node.udp, DNIS, US, "cm-1").await;
    assert_eq!(queue(&r), "general", "{r}");
    // The kubelet's update: a new directory, the ..data link swapped, the old one removed.
    configmap_version(&rules, "2026_12_04_2", "general-de");
    std::fs::remove_dir_all(rules.join("..2026_12_04_1")).unwrap();
    let start = Instant::now();
    let mut n = 1;
    loop {
        n += 1;
        let r = call(node.udp, DNIS, US, &format!("cm-{n}")).await;
        if queue(&r) == "general-de" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the rules never reloaded: {r}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("ConfigMap swap picked up after {:?}", start.elapsed());
}

#[test]
fn the_container_config_passes_check_and_the_manifests_agree_with_it() {
    // The image's and the pod's config, with its absolute paths moved into a scratch folder.
    let scratch = tempfile::tempdir().unwrap();
    let etc = scratch.path().join("etc-tollgate");
    std::fs::create_dir_all(etc.join("routes")).unwrap();
    for f in ["default.toml", "queues.toml"] {
        std::fs::copy(
            repo().join("deploy/kubernetes/routes").join(f),
            etc.join("routes").join(f),
        )
        .unwrap();
    }
    let text = read("deploy/kubernetes/tollgate.toml");
    std::fs::write(
        etc.join("tollgate.toml"),
        text.replace("/etc/tollgate", &etc.display().to_string()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["check", "--config"])
        .arg(etc.join("tollgate.toml"))
        .env("TOLLGATE_REDIS_URL", "redis://127.0.0.1:1/0")
        .env("TOLLGATE_ADMIN_TOKEN", "an-admin-token-of-some-length")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tollgate check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The ports the config listens on are the ones the manifests and the image publish.
    assert!(text.contains("udp = [\"0.0.0.0:5060\"]") && text.contains("tcp = [\"0.0.0.0:5060\"]"));
    assert!(text.contains("listen = \"0.0.0.0:8080\""));
    let deployment = read("deploy/kubernetes/deployment.yaml");
    for port in [
        "{name: sip-udp, containerPort: 5060, protocol: UDP}",
        "{name: sip-tcp, containerPort: 5060, protocol: TCP}",
        "{name: http, containerPort: 8080, protocol: TCP}",
        "path: /readyz, port: http",
        "path: /healthz, port: http",
        "mountPath: /etc/tollgate/routes",
        "mountPath: /etc/tollgate/tollgate.toml",
    ] {
        assert!(deployment.contains(port), "deployment.yaml lacks {port}");
    }
    assert!(text.contains("rules_dir = \"/etc/tollgate/routes\""));
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("EXPOSE 5060/udp 5060/tcp 8080/tcp"));
    assert!(dockerfile.contains("COPY deploy/kubernetes/tollgate.toml /etc/tollgate/tollgate.toml"));
    assert!(dockerfile.contains("USER 10001") && deployment.contains("runAsUser: 10001"));
    // The grace period covers the preStop pause and the drain.
    let grab = |hay: &str, key: &str| -> u64 {
        hay.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .and_then(|v| {
                v.trim()
                    .trim_matches(|c: char| !c.is_ascii_digit())
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("{key}"))
    };
    let grace = grab(&deployment, "terminationGracePeriodSeconds:");
    let drain_s = grab(&text, "drain_timeout_ms =") / 1000;
    let pause = deployment
        .lines()
        .find_map(|l| l.trim().strip_prefix("command: [\"/bin/sleep\", \""))
        .and_then(|v| v.split('"').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap();
    assert!(
        grace > pause + drain_s,
        "grace {grace} s ≤ {pause} s + {drain_s} s"
    );
    // Every file kustomize is told to put in a ConfigMap exists.
    let kustomization = read("deploy/kubernetes/kustomization.yaml");
    for line in kustomization.lines() {
        if let Some(f) = line.trim().strip_prefix("- ") {
            if f.ends_with(".toml") || f.ends_with(".yaml") {
                assert!(
                    repo().join("deploy/kubernetes").join(f).exists(),
                    "kustomization.yaml names a missing {f}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_while_the_node_drains() {
    let mut node = Process::start(&config(""));
    ready(&node.base()).await;
    let udp = node.udp;
    // OPTIONS every 5 ms keep datagrams arriving, so the drain keeps answering them (for up to
    // its 200 ms quiet window) while /readyz is polled.
    let pinger = tokio::spawn(async move {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for i in 0..2000u32 {
            let msg = format!(
                "OPTIONS sip:ping@{udp} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKp{i}\r\n\
                 From: <sip:p@x>;tag=p\r\nTo: <sip:ping@x>\r\nCall-ID: p{i}\r\nCSeq: 1 OPTIONS\r\n\
                 Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = sock.send_to(msg.as_bytes(), udp).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    node.signal("-TERM");
    let mut saw = None;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        match http().get(format!("{}/readyz", node.base())).send().await {
            Ok(r) if r.status() == 503 => {
                saw = Some(r.text().await.unwrap());
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pinger.abort();
    let body = saw.expect("/readyz never answered 503 during the drain");
    assert!(body.contains("draining"), "{body}");
    let status = tokio::task::spawn_blocking(move || node.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
}
