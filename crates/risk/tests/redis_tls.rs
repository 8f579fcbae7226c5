//! Redis over TLS with a password: a real `redis-server --tls-port` with a certificate from a
//! test CA (rcgen) and `requirepass`, reached through `rediss://:password@…` and
//! `risk.redis.tls_ca_file`. Without the CA (the system's roots) or with a wrong password the
//! store refuses to count, so the TLS and the auth are real.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
#[path = "../../../tests/support/redis_cluster.rs"]
mod redis_cluster;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::e164;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tollgate_risk::velocity::Caps;
use tollgate_risk::{Observation, RedisConfig, RedisVelocity, Secret, Trust, VelocityStore};

struct TlsRedis {
    port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA and a server certificate for 127.0.0.1 signed by it, as PEM files in `dir`:
/// `ca.pem`, `server.pem`, `server.key`.
fn pki(dir: &std::path::Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "tollgate test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca, &ca_key);
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

fn start() -> TlsRedis {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = |f: &str| dir.path().join(f).display().to_string();
    let child = Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string()])
        .args([
            "--tls-cert-file",
            &p("server.pem"),
            "--tls-key-file",
            &p("server.key"),
        ])
        .args([
            "--tls-ca-cert-file",
            &p("ca.pem"),
            "--tls-auth-clients",
            "no",
        ])
        .args(["--requirepass", "s3cret-pass"])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "no TLS listener");
        std::thread::sleep(Duration::from_millis(20));
    }
    TlsRedis { port, child, dir }
}

fn store(cfg: &RedisConfig) -> RedisVelocity {
    RedisVelocity::new(
        tollgate_risk::redis_connect(cfg).unwrap(),
        "tg",
        vec![60],
        Caps::default(),
        Duration::from_secs(2),
        Duration::from_millis(1),
    )
    .with_history_ttl(0)
}

fn cfg(server: &TlsRedis, password: &str, ca: bool) -> RedisConfig {
    RedisConfig {
        url: Some(Secret::new(format!(
            "rediss://:{password}@127.0.0.1:{}/0",
            server.port
        ))),
        url_env: None,
        tls_ca_file: ca.then(|| server.dir.path().join("ca.pem")),
        response_timeout_ms: 1000,
        connection_timeout_ms: 1000,
        ..RedisConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_the_ca_file_and_the_password_counts_and_anything_less_does_not() {
    let server = start();
    let ani = e164("12125551212");
    let obs = |call: &'static str| Observation {
        call_id: call,
        ani: &ani,
        dnis: None,
        npa_nxx: Some((212, 555)),
        now: SystemTime::now(),
        trust: Trust::Verified,
    };
    let good = store(&cfg(&server, "s3cret-pass", true));
    assert_eq!(good.record(obs("t1")).await.unwrap().ani, vec![1]);
    assert_eq!(good.record(obs("t2")).await.unwrap().ani, vec![2]);
    // The system's roots do not know the test CA: the handshake fails.
    let untrusted = store(&cfg(&server, "s3cret-pass", false));
    let err = untrusted.record(obs("t3")).await.unwrap_err();
    println!("without the CA: {err}");
    // The right CA, the wrong password: refused by the server.
    let wrong = store(&cfg(&server, "wrong-pass", true));
    let err = wrong.record(obs("t4")).await.unwrap_err();
    println!("wrong password: {err}");
    // Neither reached the counters.
    assert_eq!(good.record(obs("t5")).await.unwrap().ani, vec![3]);
}

/// The same on a Redis Cluster (3 masters, 3 replicas) whose clients, replication and bus all
/// speak TLS and which requires a password: seeds as `rediss://:password@…` with the CA file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_tls_with_a_password_counts_on_every_master() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let files = redis_cluster::TlsFiles {
        cert: dir.path().join("server.pem"),
        key: dir.path().join("server.key"),
        ca: dir.path().join("ca.pem"),
    };
    let cluster = redis_cluster::RedisCluster::start_with(Some("cl-pass"), Some(&files));
    let cfg = |urls: Vec<String>| RedisConfig {
        url: None,
        url_env: None,
        cluster: urls.into_iter().map(Secret::new).collect(),
        tls_ca_file: Some(files.ca.clone()),
        response_timeout_ms: 1000,
        connection_timeout_ms: 1000,
        ..RedisConfig::default()
    };
    let v = store(&cfg(cluster.seed_urls()));
    let mut masters = std::collections::BTreeSet::new();
    for i in 0..30u16 {
        let ani = e164(&format!("1212{:03}1000", 200 + i * 13));
        let o = Observation {
            call_id: "c",
            ani: &ani,
            dnis: None,
            npa_nxx: Some((212, 200 + i * 13)),
            now: SystemTime::now(),
            trust: Trust::Verified,
        };
        assert_eq!(v.record(o).await.unwrap().ani, vec![1], "{ani}");
        let o2 = Observation { call_id: "d", ..o };
        assert_eq!(v.record(o2).await.unwrap().ani, vec![2], "{ani}");
        let key = tollgate_risk::velocity::keys_for("tg", &o)[0].clone();
        masters.insert(cluster.master_of_slot(cluster.keyslot(&key)).unwrap());
    }
    assert_eq!(
        masters.len(),
        3,
        "the callers' keys on every master: {masters:?}"
    );
    let wrong: Vec<String> = cluster
        .seed_urls()
        .iter()
        .map(|u| u.replace(":cl-pass@", ":nope@"))
        .collect();
    let ani = e164("12125551212");
    let o = Observation {
        call_id: "w",
        ani: &ani,
        dnis: None,
        npa_nxx: Some((212, 555)),
        now: SystemTime::now(),
        trust: Trust::Verified,
    };
    let err = store(&cfg(wrong)).record(o).await.unwrap_err();
    println!("cluster, wrong password: {err}");
}
