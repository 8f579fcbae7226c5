//! A carrier's SBC delivering over TLS: Kamailio with its `tls` module (tests/data/kamailio/
//! tls_carrier.cfg) relays sipp's calls to a real `tollgate serve` over TLS, showing a client
//! certificate made in the test (rcgen). The trunk is named by that certificate: with it the
//! carrier's P-Asserted-Identity is believed (the 302's Contact carries the PAI number as the
//! ANI) and the Contact keeps `sips:`; the same SBC at the same address with another
//! certificate of the same CA is the trunk untrusted (the ANI is From's). The metrics count the
//! calls by transport and peer. And SIGHUP to the running binary swaps its certificate for new
//! handshakes while a connection already open keeps working.
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
use std::time::Duration;

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
        terminate(&mut self.child);
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
    // The certificate's time left (rcgen's default validity runs to 4096), refreshed by the
    // file watch, so present whenever the metrics recorder was installed.
    let text = http()
        .get(format!("{base}/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let left: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("tollgate_sip_tls_cert_expiry_seconds "))
        .unwrap_or_else(|| panic!("no expiry gauge in {text}"))
        .trim()
        .parse()
        .unwrap();
    assert!(left > 365.0 * 86_400.0, "{left}");
}

/// A rustls client trusting `ca`; the node's name is `tollgate.test`.
async fn tls_client(
    addr: std::net::SocketAddr,
    ca: &Path,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("tollgate.test").unwrap(),
            tcp,
        )
        .await
}

/// One INVITE over `s`; the status line of its final answer.
async fn tls_call<S>(s: &mut S, branch: &str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let invite = format!(
        "INVITE sip:+18005550100@tollgate.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+12125550111@carrier.test>;tag=a\r\nTo: <sip:+18005550100@tollgate.test>\r\n\
         Call-ID: {branch}@test\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(invite.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(n > 0, "closed");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        for msg in text.split("\r\n\r\n") {
            if msg.starts_with("SIP/2.0 ") && !msg.starts_with("SIP/2.0 100") {
                return msg.lines().next().unwrap().to_owned();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_certificate_and_open_connections_stay() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (first, second) = (Ca::new("first"), Ca::new("second"));
    let first_pem = first.write(&d.join("first.pem"));
    let second_pem = second.write(&d.join("second.pem"));
    let (cert, key) = first.write_leaf(d, "tollgate", "tollgate.test");
    let tls_port = free_tcp();
    // No polling to speak of: only SIGHUP can bring the new certificate in.
    let text = format!(
        "[sip]\nudp = [\"127.0.0.1:0\"]\n[sip.tls]\nlisten = [\"127.0.0.1:{tls_port}\"]\n\
         cert = \"{}\"\nkey = \"{}\"\nreload_poll_ms = 3600000\n\
         [[trunk]]\nname = \"local\"\ncidrs = [\"127.0.0.1/32\"]\ntrusted = true\n\
         [routing]\nacd_host = \"acd.example.net\"\ndefault_queue = \"general\"\n\
         [log]\nformat = \"json\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
        cert.display(),
        key.display()
    );
    let node = Process::start(&text);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{tls_port}").parse().unwrap();
    let mut open = tls_client(addr, &first_pem).await.unwrap();
    assert!(tls_call(&mut open, "one").await.starts_with("SIP/2.0 302"));

    second.write_leaf(d, "tollgate", "tollgate.test");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        tls_client(addr, &second_pem).await.is_err(),
        "the new files are not read before SIGHUP"
    );
    node.signal("-HUP");
    let mut swapped = None;
    for _ in 0..100 {
        if let Ok(s) = tls_client(addr, &second_pem).await {
            swapped = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut fresh = swapped.expect("after SIGHUP the new certificate is presented");
    assert!(tls_call(&mut fresh, "two").await.starts_with("SIP/2.0 302"));
    assert!(
        tls_client(addr, &first_pem).await.is_err(),
        "the old one is gone"
    );
    // The connection made before the swap still carries calls.
    assert!(tls_call(&mut open, "three")
        .await
        .starts_with("SIP/2.0 302"));
}
