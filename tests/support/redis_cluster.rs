//! A real Redis Cluster for tests: 3 masters and 3 replicas, each a `redis-server
//! --cluster-enabled yes` child on its own loopback port (and its own cluster bus port), joined
//! by `redis-cli --cluster create … --cluster-replicas 1 --cluster-yes`. `cluster-node-timeout`
//! is 1 s so a replica takes over within seconds of its master's death. Everything is killed on
//! drop. Shared by crates/risk/tests and the workspace tests (included with `#[path]`), so it
//! depends on std and tempfile only and drives Redis through `redis-cli`, an independent client.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

pub struct RedisCluster {
    /// Client ports, in start order.
    pub ports: Vec<u16>,
    children: Vec<Option<Child>>,
    _dir: tempfile::TempDir,
    /// What `redis-cli` needs to talk to these nodes (`-a`, `--tls`).
    cli_args: Vec<String>,
    /// `redis` or `rediss`, and the password, for [`RedisCluster::seed_urls`].
    scheme: &'static str,
    password: Option<String>,
}

/// Certificate, key and CA (PEM files) for a cluster whose clients, replication and bus all
/// speak TLS.
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub ca: std::path::PathBuf,
}

fn free_port() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("free port");
    let p = l.local_addr().expect("addr").port();
    (l, p)
}

/// `redis-cli -p PORT args…` (one node, not following redirects), its stdout.
pub fn cli(port: u16, args: &[&str]) -> String {
    cli_with(&[], port, args)
}

fn cli_with(extra: &[String], port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(extra)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .expect("redis-cli is installed (it comes with redis-server)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl RedisCluster {
    /// Starts 6 nodes and creates the cluster; returns once every node sees `cluster_state:ok`
    /// and 6 known nodes.
    pub fn start() -> Self {
        Self::start_with(None, None)
    }

    /// With `requirepass`/`masterauth`, and TLS for clients, replication and the cluster bus.
    pub fn start_with(password: Option<&str>, tls: Option<&TlsFiles>) -> Self {
        let mut cli_args = Vec::new();
        if let Some(pw) = password {
            cli_args.extend([
                "-a".to_owned(),
                pw.to_owned(),
                "--no-auth-warning".to_owned(),
            ]);
        }
        if let Some(t) = tls {
            cli_args.extend([
                "--tls".to_owned(),
                "--cacert".to_owned(),
                t.ca.display().to_string(),
            ]);
        }
        // Ports are chosen free and then released, so another test may take one before its
        // node binds it: such a node exits, and the whole set is tried again on new ports.
        let mut attempt = 0;
        let s = loop {
            attempt += 1;
            let mut s = Self::spawn(password, tls, cli_args.clone());
            if s.all_answer() {
                break s;
            }
            assert!(attempt < 5, "the cluster's nodes never all answered PING");
            for c in s.children.iter_mut().flatten() {
                let _ = c.kill();
                let _ = c.wait();
            }
        };
        let nodes: Vec<String> = s.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut create = Command::new("redis-cli");
        create.args(&s.cli_args);
        create.arg("--cluster").arg("create");
        create.args(&nodes);
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let out = create
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli --cluster create");
        assert!(out.success(), "redis-cli --cluster create failed");
        for &p in &s.ports {
            wait_for(
                || {
                    let info = s.cli(p, &["CLUSTER", "INFO"]);
                    info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:6")
                },
                "every node sees the cluster ok with 6 nodes",
            );
        }
        // 3 masters, and each replica's initial sync done: a replica that never synced counts
        // its data as infinitely old and refuses to take over (cluster-replica-validity-factor).
        wait_for(|| s.masters().len() == 3, "3 masters");
        wait_for(
            || {
                s.ports
                    .iter()
                    .map(|&p| s.cli(p, &["INFO", "replication"]))
                    .filter(|i| i.contains("role:slave") && i.contains("master_link_status:up"))
                    .count()
                    == 3
            },
            "3 replicas in sync with their masters",
        );
        s
    }

    /// Six nodes on fresh ports, not yet joined.
    fn spawn(password: Option<&str>, tls: Option<&TlsFiles>, cli_args: Vec<String>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // Hold all 12 listeners until the ports are chosen, so no two are the same.
        let picked: Vec<_> = (0..12).map(|_| free_port()).collect();
        let ports: Vec<u16> = picked[..6].iter().map(|(_, p)| *p).collect();
        let bus: Vec<u16> = picked[6..].iter().map(|(_, p)| *p).collect();
        drop(picked);
        let mut children = Vec::new();
        for (port, bus) in ports.iter().zip(&bus) {
            let mut cmd = Command::new("redis-server");
            match tls {
                Some(t) => {
                    cmd.args(["--port", "0", "--tls-port", &port.to_string()])
                        .args(["--tls-cluster", "yes", "--tls-replication", "yes"])
                        .arg("--tls-cert-file")
                        .arg(&t.cert)
                        .arg("--tls-key-file")
                        .arg(&t.key)
                        .arg("--tls-ca-cert-file")
                        .arg(&t.ca)
                        .args(["--tls-auth-clients", "no"]);
                }
                None => {
                    cmd.args(["--port", &port.to_string()]);
                }
            }
            if let Some(pw) = password {
                cmd.args(["--requirepass", pw, "--masterauth", pw]);
            }
            let child = cmd
                .args(["--cluster-port", &bus.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is installed (apt-get install redis-server; .ci/run does)");
            children.push(Some(child));
        }
        Self {
            ports,
            children,
            _dir: dir,
            cli_args,
            scheme: if tls.is_some() { "rediss" } else { "redis" },
            password: password.map(str::to_owned),
        }
    }

    /// Whether every node answers PING within the wait; false at once if one has exited.
    fn all_answer(&mut self) -> bool {
        let start = Instant::now();
        for i in 0..self.ports.len() {
            loop {
                if self.cli(self.ports[i], &["PING"]).trim() == "PONG" {
                    break;
                }
                let exited = self.children[i]
                    .as_mut()
                    .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
                if exited || start.elapsed() > WAIT {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        true
    }

    /// `redis-cli` against one node of this cluster (with its password and TLS).
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        cli_with(&self.cli_args, port, args)
    }

    /// Seed nodes as URLs with the scheme and password: `rediss://:pw@127.0.0.1:port`.
    pub fn seed_urls(&self) -> Vec<String> {
        let auth = self
            .password
            .as_ref()
            .map(|p| format!(":{p}@"))
            .unwrap_or_default();
        self.ports
            .iter()
            .map(|p| format!("{}://{auth}127.0.0.1:{p}", self.scheme))
            .collect()
    }

    /// Seed nodes as `host:port`, the form `risk.redis.cluster` takes.
    pub fn seeds(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// A TOML array of the seeds: `["127.0.0.1:1", …]`.
    pub fn seeds_toml(&self) -> String {
        let quoted: Vec<String> = self.seeds().iter().map(|s| format!("\"{s}\"")).collect();
        format!("[{}]", quoted.join(", "))
    }

    fn alive_port(&self) -> u16 {
        self.ports
            .iter()
            .zip(&self.children)
            .find(|(_, c)| c.is_some())
            .map(|(p, _)| *p)
            .expect("a node alive")
    }

    /// The slot Redis itself computes for a key (CRC16 of its hash tag, mod 16384).
    pub fn keyslot(&self, key: &str) -> u16 {
        self.cli(self.alive_port(), &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT")
    }

    /// The live masters as (port, slot ranges), from `CLUSTER NODES` of a live node.
    pub fn masters(&self) -> Vec<(u16, Vec<(u16, u16)>)> {
        let nodes = self.cli(self.alive_port(), &["CLUSTER", "NODES"]);
        let mut out = Vec::new();
        for line in nodes.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let Some(port) = f[1]
                .split('@')
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
            else {
                continue;
            };
            let ranges: Vec<(u16, u16)> = f[8..]
                .iter()
                .filter(|r| !r.starts_with('['))
                .filter_map(|r| match r.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => r.parse().ok().map(|x| (x, x)),
                })
                .collect();
            if !ranges.is_empty() {
                out.push((port, ranges));
            }
        }
        out
    }

    /// The port of the master owning `slot`.
    pub fn master_of_slot(&self, slot: u16) -> Option<u16> {
        self.masters()
            .into_iter()
            .find(|(_, r)| r.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .map(|(p, _)| p)
    }

    /// `kill -9` of the node on `port`.
    pub fn kill(&mut self, port: u16) {
        let i = self.ports.iter().position(|p| *p == port).expect("a node");
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until another node has taken over `slot` after its master died; returns the new
    /// master's port.
    pub fn wait_failover(&self, slot: u16, old: u16) -> u16 {
        let mut new = None;
        wait_for(
            || {
                new = self.master_of_slot(slot).filter(|p| *p != old);
                new.is_some()
                    && self
                        .cli(self.alive_port(), &["CLUSTER", "INFO"])
                        .contains("cluster_state:ok")
            },
            "a replica is promoted",
        );
        new.expect("new master")
    }

    /// Sums `f(port)` over the live masters.
    pub fn on_masters<T>(&self, mut f: impl FnMut(u16) -> T) -> Vec<T> {
        self.masters().into_iter().map(|(p, _)| f(p)).collect()
    }

    /// The keys matching `pattern` on every live master (`--scan`).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        self.on_masters(|p| self.cli(p, &["--scan", "--pattern", pattern]))
            .into_iter()
            .flat_map(|s| s.lines().map(str::to_owned).collect::<Vec<_>>())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// A command sent to the master owning `key` (so no redirect is needed).
    pub fn on_key(&self, key: &str, args: &[&str]) -> String {
        let port = self
            .master_of_slot(self.keyslot(key))
            .expect("a master for the key's slot");
        self.cli(port, args)
    }
}

fn wait_for(mut ok: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < WAIT, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
