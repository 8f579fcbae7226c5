//! A carrier's SBC delivering over TLS: Kamailio with its `tls` module (tests/data/kamailio/
//! tls_carrier.cfg) relays sipp's calls to a real `tollgate serve` over TLS, showing a client
//! certificate made in the test (rcgen). The trunk is named by that certificate: with it the
//! carrier's P-Asserted-Identity is believed (the 302's Contact carries the PAI number as the
//! ANI) and the Contact keeps `sips:`; the same SBC at the same address with another
//! certificate of the same CA is the trunk untrusted (the ANI is From's). The metrics count the
//! calls by transport and peer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod http_support;

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_support::*;
use tollgate_testkit::Ca;

const PAI: &str = "13125550122";
const FROM: &str = "+12125550111";
const CALLS: usize = 20;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Kamailio {
    child: Child,
    udp: u16,
    log: PathBuf,
}

impl Kamailio {
    /// An SBC showing `cert`/`key` to Tollgate at `tollgate_tls`, checking Tollgate's
    /// certificate against `server_ca`.
    fn start(dir: &Path, cert: &Path, key: &Path, server_ca: &Path, tollgate_tls: u16) -> Self {
        let tls_cfg = dir.join("tls.cfg");
        let profile = |verify: &str| {
            format!(
                "method = TLSv1.2+\nverify_certificate = {verify}\nrequire_certificate = {verify}\n\
                 private_key = {}\ncertificate = {}\nca_list = {}\n",
                key.display(),
                cert.display(),
                server_ca.display()
            )
        };
        std::fs::write(
            &tls_cfg,
            format!(
                "[server:default]\n{}\n[client:default]\n{}",
                profile("no"),
                profile("yes")
            ),
        )
        .unwrap();
        let udp = free_udp();
        let own_tls = free_tcp();
        let log = dir.join("kamailio.log");
        let run = dir.join("run");
        std::fs::create_dir_all(&run).unwrap();
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(repo().join("tests/data/kamailio/tls_carrier.cfg"))
            .args(["-DD", "-E"])
            .arg("-A")
            .arg(format!("UDP_LISTEN=udp:127.0.0.1:{udp}"))
            .arg("-A")
            .arg(format!("TLS_LISTEN=tls:127.0.0.1:{own_tls}"))
            .arg("-A")
            .arg(format!("TLS_CFG=\"{}\"", tls_cfg.display()))
            .arg("-A")
            .arg(format!(
                "TOLLGATE=\"sip:127.0.0.1:{tollgate_tls};transport=tls\""
            ))
            .arg("-Y")
            .arg(&run)
            .arg("-w")
            .arg(&run)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("kamailio is installed with its tls module (.ci/run installs them)");
        std::thread::sleep(Duration::from_millis(1500));
        Self { child, udp, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `CALLS` calls from sipp through the SBC; each must get a 302 whose Contact is
/// `<sips:general@acd.example.net;…;ani=%2B<expect_ani>` (sipp fails the call otherwise).
/// Returns (successful, failed, sipp's stderr).
fn carrier(dir: &Path, sbc: u16, expect_ani: &str) -> (usize, usize, String) {
    let scenario = std::fs::read_to_string(repo().join("tests/data/sipp/invite_302.xml"))
        .unwrap()
        .replace(
            r#"<recv response="302" rtd="true"/>"#,
            &format!(
                r#"<recv response="302" rtd="true">
    <action>
      <ereg regexp="sips:general@acd\.example\.net;.*ani=%2B{}" search_in="hdr" header="Contact:" check_it="true" assign_to="contact"/>
    </action>
  </recv>
  <Reference variables="contact"/>"#,
                expect_ani.trim_start_matches('+')
            ),
        );
    assert!(
        scenario.contains("check_it"),
        "the 302 check is in the scenario"
    );
    std::fs::write(dir.join("scenario.xml"), scenario).unwrap();
    let mut csv = String::from("SEQUENTIAL\n");
    for _ in 0..CALLS {
        csv.push_str(&format!("{PAI};+18005550100;{FROM}\n"));
    }
    std::fs::write(dir.join("calls.csv"), csv).unwrap();
    let out = Command::new("sipp")
        .arg(format!("127.0.0.1:{sbc}"))
        .arg("-sf")
        .arg(dir.join("scenario.xml"))
        .arg("-inf")
        .arg(dir.join("calls.csv"))
        .args(["-m", &CALLS.to_string(), "-r", "20", "-l", "20"])
        .args(["-i", "127.0.0.1", "-p", "0", "-nostdin"])
        .args(["-timeout", "60s", "-timeout_error", "-recv_timeout", "8000"])
        .args(["-trace_stat", "-stf"])
        .arg(dir.join("stat.csv"))
        .current_dir(dir)
        .output()
        .expect("sipp runs (apt-get install sip-tester)");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stat = std::fs::read_to_string(dir.join("stat.csv")).unwrap_or_default();
    let rows: Vec<Vec<&str>> = stat.lines().map(|l| l.split(';').collect()).collect();
    assert!(rows.len() >= 2, "sipp stats missing; stderr: {stderr}");
    let col = |name: &str| {
        let i = rows[0].iter().position(|h| *h == name).unwrap();
        rows.last().unwrap()[i].parse::<usize>().unwrap()
    };
    (col("SuccessfulCall(C)"), col("FailedCall(C)"), stderr)
}

fn config(dir: &Path, tls_port: u16, cert: &Path, key: &Path, client_ca: &Path) -> String {
    format!(
        r#"[sip]
udp = ["127.0.0.1:0"]

[sip.tls]
listen = ["127.0.0.1:{tls_port}"]
cert = "{cert}"
key = "{key}"
client_ca = "{client_ca}"

[[trunk]]
name = "carrier-tls"
cidrs = ["127.0.0.1/32"]
tls_peers = ["dns:sbc.carrier.test"]
trusted = true

[routing]
acd_host = "acd.example.net"
default_queue = "general"

[log]
format = "json"
level = "info"

[http]
listen = "127.0.0.1:0"

[[http.token]]
name = "ops"
scope = "admin"
token = "{ADMIN}"
"#,
        cert = cert.display(),
        key = key.display(),
        client_ca = client_ca.display(),
    )
    .replace("{dir}", &dir.display().to_string())
}

async fn metric(base: &str, needle: &str) -> f64 {
    let text = http()
        .get(format!("{base}/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("tollgate_calls_by_transport_total{") && l.contains(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_sbc_over_tls_is_the_trunk_its_certificate_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server_ca = Ca::new("tollgate ca");
    let carrier_ca = Ca::new("carrier ca");
    let (cert, key) = server_ca.write_leaf(d, "tollgate", "tollgate.test");
    let (sbc_cert, sbc_key) = carrier_ca.write_leaf(d, "sbc", "sbc.carrier.test");
    let (other_cert, other_key) = carrier_ca.write_leaf(d, "other", "other.carrier.test");
    let server_ca_pem = server_ca.write(&d.join("server-ca.pem"));
    let carrier_ca_pem = carrier_ca.write(&d.join("carrier-ca.pem"));

    let tls_port = free_tcp();
    let node = Process::start(&config(d, tls_port, &cert, &key, &carrier_ca_pem));
    let base = node.base();

    // The SBC with the certificate the trunk names: PAI believed, sips: kept.
    let good_dir = d.join("good");
    std::fs::create_dir_all(&good_dir).unwrap();
    let sbc = Kamailio::start(&good_dir, &sbc_cert, &sbc_key, &server_ca_pem, tls_port);
    let (ok, failed, stderr) = carrier(&good_dir, sbc.udp, PAI);
    assert_eq!(
        (ok, failed),
        (CALLS, 0),
        "the named SBC's calls: sipp {stderr}\nkamailio: {}",
        sbc.log()
    );
    drop(sbc);
    assert_eq!(
        metric(&base, r#"tls_peer="dns:sbc.carrier.test""#).await,
        CALLS as f64
    );

    // The same address, another certificate of the same CA: untrusted, From is the ANI.
    let other_dir = d.join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let sbc = Kamailio::start(
        &other_dir,
        &other_cert,
        &other_key,
        &server_ca_pem,
        tls_port,
    );
    let (ok, failed, stderr) = carrier(&other_dir, sbc.udp, FROM);
    assert_eq!(
        (ok, failed),
        (CALLS, 0),
        "another certificate's calls: sipp {stderr}\nkamailio: {}",
        sbc.log()
    );
    drop(sbc);
    assert_eq!(metric(&base, r#"tls_peer="unmatched""#).await, CALLS as f64);
    assert_eq!(
        metric(&base, r#"transport="tls""#).await,
        2.0 * CALLS as f64
    );
}
