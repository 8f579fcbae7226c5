//! SIP over TLS against a real rustls client, with a PKI made in the test (rcgen): the trunk a
//! verified client certificate names is believed; the same address with no certificate or
//! another one is not; an expired certificate, a wrong CA, a plain-TCP hello and a handshake
//! that never finishes are each refused and the listener keeps serving; a certificate swapped
//! on disk is what the next handshake sees, while a connection already open keeps working.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tollgate_core::{
    AniSource, CallFacts, Decision, DecisionAction, NumberPlan, Target, Transport,
};
use tollgate_sip::extract::Emergency;
use tollgate_sip::tls::{Certificates, PeerMatch, TlsFiles};
use tollgate_sip::trunk::{Trunk, Trunks, UnknownSource};
use tollgate_sip::{Call, CallHandler, Context, Listeners, Server, SipConfig};
use tollgate_testkit::{Ca, Leaf};

/// Records each call's facts and routes it to `q`.
#[derive(Debug, Default)]
struct Recording {
    calls: Mutex<Vec<CallFacts>>,
}

impl CallHandler for Recording {
    async fn decide(&self, call: &mut Call) -> Decision {
        self.calls.lock().unwrap().push(call.facts.clone());
        Decision {
            action: DecisionAction::Route(Target::new("q", "acd.example")),
            rule: "r".into(),
            version: Default::default(),
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

struct Node {
    addr: SocketAddr,
    server: Arc<Server<Recording>>,
    certs: Arc<Certificates>,
    server_ca: Ca,
    client_ca: Ca,
    dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

impl Node {
    /// A TLS listener verifying client certificates against `client_ca` (optional), with the
    /// trunk `carrier` = 127.0.0.0/8 plus the certificate `dns:sbc.carrier.test`, trusted.
    async fn start() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let server_ca = Ca::new("server ca");
        let client_ca = Ca::new("carrier ca");
        let (cert, key) = server_ca.write_leaf(dir.path(), "cert", "tollgate.test");
        let files = TlsFiles {
            cert,
            key,
            client_ca: Some(client_ca.write(&dir.path().join("ca.pem"))),
            require_client_cert: false,
        };
        let certs = Certificates::new(files, Duration::from_millis(400)).unwrap();
        let plan = Arc::new(NumberPlan::load());
        let trunk = Trunk {
            name: "carrier".into(),
            cidrs: vec!["127.0.0.0/8".parse().unwrap()],
            trusted: true,
            ani_precedence: Trunk::DEFAULT_ANI.to_vec(),
            dnis_precedence: Trunk::DEFAULT_DNIS.to_vec(),
            region: plan.region("US").unwrap().clone(),
            tls_peers: vec![PeerMatch::parse("dns:sbc.carrier.test").unwrap()],
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::new(Context {
            handler: Recording::default(),
            trunks: Trunks::new(vec![trunk], UnknownSource::Reject),
            plan,
            emergency: Emergency::default(),
            config: SipConfig::default(),
        });
        let (tx, rx) = oneshot::channel::<()>();
        let listeners = Listeners {
            tls: vec![(listener, Arc::clone(&certs))],
            ..Listeners::default()
        };
        tokio::spawn(Arc::clone(&server).serve(listeners, async move {
            let _ = rx.await;
        }));
        Node {
            addr,
            server,
            certs,
            server_ca,
            client_ca,
            dir,
            _stop: tx,
        }
    }

    fn calls(&self) -> Vec<CallFacts> {
        self.server.handler().calls.lock().unwrap().clone()
    }

    /// A TLS client trusting the server CA, showing `client` (chain PEM, key PEM) if given.
    async fn connect(&self, client: Option<&Leaf>) -> std::io::Result<TlsStream<TcpStream>> {
        self.connect_to(client, self.server_ca.pem()).await
    }

    async fn connect_to(
        &self,
        client: Option<&Leaf>,
        server_ca_pem: &str,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(server_ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some(leaf) => {
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(leaf.cert.as_bytes())
                        .map(Result::unwrap)
                        .collect();
                let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
        };
        let tcp = TcpStream::connect(self.addr).await?;
        let connector = TlsConnector::from(Arc::new(config));
        let mut tls = connector
            .connect(ServerName::try_from("tollgate.test").unwrap(), tcp)
            .await?;
        // TLS 1.3 reports a refused client certificate after the handshake: a read shows it.
        tls.flush().await?;
        Ok(tls)
    }
}

fn invite(branch: &str, from_user: &str, pai_user: &str) -> String {
    format!(
        "INVITE sips:+18005550100@tollgate.test SIP/2.0\r\n\
         Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{from_user}@carrier.test;user=phone>;tag=a{branch}\r\n\
         To: <sip:+18005550100@tollgate.test>\r\n\
         Call-ID: {branch}@carrier.test\r\n\
         CSeq: 1 INVITE\r\n\
         P-Asserted-Identity: <sip:{pai_user}@carrier.test;user=phone>\r\n\
         Contact: <sips:sbc@127.0.0.1:5061;transport=tls>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Reads one response (they carry no body) off the stream, or `None` if it closes first.
async fn response<S: tokio::io::AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let msg: Vec<u8> = buf.drain(..end + 4).collect();
            return Some(String::from_utf8(msg).unwrap());
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("no response within 5 s"),
        }
    }
}

/// Sends an INVITE and returns the final response (skipping a 100).
async fn call<S>(s: &mut S, buf: &mut Vec<u8>, branch: &str) -> Option<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    s.write_all(invite(branch, "+12125550111", "+13125550122").as_bytes())
        .await
        .ok()?;
    loop {
        let r = response(s, buf).await?;
        if !r.starts_with("SIP/2.0 100") {
            return Some(r);
        }
    }
}

fn facts_of(node: &Node, branch: &str) -> CallFacts {
    node.calls()
        .into_iter()
        .find(|f| f.call_id == format!("{branch}@carrier.test"))
        .unwrap_or_else(|| panic!("no call {branch}"))
}

#[tokio::test]
async fn the_certificate_names_the_trunk_and_the_address_alone_does_not() {
    let node = Node::start().await;
    let good = node.client_ca.leaf("sbc.carrier.test", false);
    let other = node.client_ca.leaf("sbc.other.test", false);

    // The trunk's certificate: trusted, PAI believed; the 302 over the same connection, sips:.
    let mut tls = node.connect(Some(&good)).await.unwrap();
    let mut buf = Vec::new();
    let r = call(&mut tls, &mut buf, "good1").await.expect("answer");
    assert!(r.starts_with("SIP/2.0 302"), "{r}");
    assert!(r.contains("Contact: <sips:q@acd.example"), "{r}");
    assert!(
        r.contains("Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKgood1"),
        "{r}"
    );
    // Connection reuse: a second call on the same connection.
    let r2 = call(&mut tls, &mut buf, "good2").await.expect("answer");
    assert!(r2.starts_with("SIP/2.0 302"), "{r2}");
    let f = facts_of(&node, "good1");
    assert!(f.trusted);
    assert_eq!(f.ani_source, AniSource::Pai);
    assert_eq!(f.ani.to_string(), "+13125550122");
    assert_eq!(f.arrival.transport, Transport::Tls);
    assert_eq!(f.arrival.tls_peer.as_deref(), Some("dns:sbc.carrier.test"));

    // The same address without a certificate: the trunk, untrusted, From counts.
    let mut bare = node.connect(None).await.unwrap();
    let mut buf = Vec::new();
    let r = call(&mut bare, &mut buf, "bare").await.expect("answer");
    assert!(r.starts_with("SIP/2.0 302"), "{r}");
    let f = facts_of(&node, "bare");
    assert!(!f.trusted, "no certificate, no trust");
    assert_eq!(f.ani_source, AniSource::From);
    assert_eq!(f.ani.to_string(), "+12125550111");
    assert_eq!(f.arrival.tls_peer, None);

    // Another certificate of the same CA: verified, but it names no trunk.
    let mut wrong = node.connect(Some(&other)).await.unwrap();
    let mut buf = Vec::new();
    let r = call(&mut wrong, &mut buf, "other").await.expect("answer");
    assert!(r.starts_with("SIP/2.0 302"), "{r}");
    let f = facts_of(&node, "other");
    assert!(!f.trusted, "another certificate, no trust");
    assert_eq!(f.ani_source, AniSource::From);
    assert_eq!(f.arrival.tls_peer.as_deref(), Some("unmatched"));
}

#[tokio::test]
async fn bad_peers_are_refused_and_the_listener_keeps_serving() {
    let node = Node::start().await;
    let expired = node.client_ca.leaf("sbc.carrier.test", true);
    let stranger_ca = Ca::new("stranger ca");
    let foreign = stranger_ca.leaf("sbc.carrier.test", false);

    for (what, cert) in [("expired", &expired), ("wrong CA", &foreign)] {
        // The server refuses the certificate: the handshake fails, or (TLS 1.3) the first
        // read after it shows the alert and no call is ever decided.
        match node.connect(Some(cert)).await {
            Err(_) => {}
            Ok(mut tls) => {
                let mut buf = Vec::new();
                let r = call(&mut tls, &mut buf, "refused").await;
                assert!(r.is_none(), "{what}: answered {r:?}");
            }
        }
    }

    // A plain-TCP INVITE on the TLS port: closed without an answer.
    let mut plain = TcpStream::connect(node.addr).await.unwrap();
    plain
        .write_all(invite("plain", "+12125550111", "+13125550122").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let r = response(&mut plain, &mut buf).await;
    assert!(r.is_none(), "plain text answered: {r:?}");

    // A handshake that never finishes: closed at the handshake timeout (400 ms here).
    let mut idle = TcpStream::connect(node.addr).await.unwrap();
    let mut one = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut one)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "a silent peer was not closed: {closed:?}"
    );

    assert!(node.calls().is_empty(), "{:?}", node.calls());
    // Still serving.
    let good = node.client_ca.leaf("sbc.carrier.test", false);
    let mut tls = node.connect(Some(&good)).await.unwrap();
    let mut buf = Vec::new();
    let r = call(&mut tls, &mut buf, "after").await.expect("answer");
    assert!(r.starts_with("SIP/2.0 302"), "{r}");
    assert_eq!(node.calls().len(), 1);
}

#[tokio::test]
async fn a_new_certificate_serves_new_handshakes_and_open_connections_stay() {
    let node = Node::start().await;
    let good = node.client_ca.leaf("sbc.carrier.test", false);
    let mut open = node.connect(Some(&good)).await.unwrap();
    let mut open_buf = Vec::new();
    assert!(call(&mut open, &mut open_buf, "before")
        .await
        .unwrap()
        .starts_with("SIP/2.0 302"));

    // Another CA's certificate at the same paths; a bad key first: the reload is refused and
    // the live certificate stays.
    let next_ca = Ca::new("next server ca");
    let next = next_ca.leaf("tollgate.test", false);
    let other = next_ca.leaf("tollgate.test", false);
    write(node.dir.path(), "cert.pem", &next.cert);
    write(node.dir.path(), "cert.key", &other.key);
    assert!(node.certs.reload().is_err(), "a key that is not the cert's");
    assert!(
        node.connect(Some(&good)).await.is_ok(),
        "the old cert still serves"
    );
    assert!(node.connect_to(Some(&good), next_ca.pem()).await.is_err());

    // The right key lands: picked up by the file watch (no explicit reload).
    let watch = tokio::spawn(
        Arc::clone(&node.certs).watch(Duration::from_millis(50), std::future::pending::<()>()),
    );
    write(node.dir.path(), "cert.key", &next.key);
    let mut swapped = None;
    for _ in 0..100 {
        if let Ok(s) = node.connect_to(Some(&good), next_ca.pem()).await {
            swapped = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watch.abort();
    let mut fresh = swapped.expect("the new certificate is presented");
    let mut buf = Vec::new();
    assert!(call(&mut fresh, &mut buf, "fresh")
        .await
        .unwrap()
        .starts_with("SIP/2.0 302"));
    assert!(
        node.connect(Some(&good)).await.is_err(),
        "the old certificate is no longer presented"
    );
    // The connection made before the swap still works.
    let r = call(&mut open, &mut open_buf, "still-open").await.unwrap();
    assert!(r.starts_with("SIP/2.0 302"), "{r}");
    assert!(facts_of(&node, "still-open").trusted);
}
