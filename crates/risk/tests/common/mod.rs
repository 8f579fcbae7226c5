//! Test support: a real redis-server on its own port (started, killed, restarted and stopped
//! by the test, never the system one), and CallFacts builders.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod facts;
pub mod scenarios;
#[allow(unused_imports)] // each test binary uses its own part of this module
pub use facts::{e164, facts};

/// A redis-server child on a free loopback port; killed on drop.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    cluster: bool,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::launch(false)
    }

    /// A one-node Redis Cluster owning every slot: it refuses cross-slot scripts and MULTIs.
    pub fn start_cluster() -> Self {
        let s = Self::launch(true);
        let mut c = s.conn();
        let _: () = redis::cmd("CLUSTER")
            .arg("ADDSLOTSRANGE")
            .arg(0)
            .arg(16383)
            .query(&mut c)
            .expect("ADDSLOTSRANGE");
        let start = Instant::now();
        loop {
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c).unwrap();
            if info.contains("cluster_state:ok") {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "cluster never ok"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn launch(cluster: bool) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut s = Self {
            port,
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
            cluster,
        };
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Starts (again) on the same port with an empty dataset and an empty script cache.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        if self.cluster {
            let conf: PathBuf = self.dir.path().join("nodes.conf");
            cmd.args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(conf);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        self.child = Some(child);
        let start = Instant::now();
        while !self.pings() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server on port {} never answered PING",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pings(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 16];
        s.write_all(b"PING\r\n").is_ok()
            && s.read(&mut buf)
                .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP / SIGCONT: the server keeps its socket but answers nothing (a hung Redis).
    pub fn pause(&self, stop: bool) {
        let sig = if stop { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill")
            .arg(sig)
            .arg(self.pid().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok);
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .expect("test connection")
    }

    /// `INFO section` as field → value.
    pub fn info(&self, section: &str) -> std::collections::HashMap<String, String> {
        let text: String = redis::cmd("INFO")
            .arg(section)
            .query(&mut self.conn())
            .unwrap();
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect()
    }

    /// `calls=` of one `cmdstat_<name>` line (0 when the command never ran).
    pub fn calls(&self, command: &str) -> u64 {
        self.info("commandstats")
            .get(&format!("cmdstat_{command}"))
            .and_then(|v| v.split(',').find_map(|kv| kv.strip_prefix("calls=")))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL ends a SIGSTOPped server too.
        self.kill();
    }
}

/// A MONITOR session: every command the server receives, as the lines Redis prints.
pub struct Monitor {
    stream: TcpStream,
}

impl Monitor {
    pub fn start(port: u16) -> Self {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(b"MONITOR\r\n").unwrap();
        let mut ok = [0u8; 5];
        stream.read_exact(&mut ok).unwrap();
        assert_eq!(&ok, b"+OK\r\n");
        Self { stream }
    }

    /// Lines received so far (waits `settle` for stragglers).
    pub fn lines(mut self, settle: Duration) -> Vec<String> {
        std::thread::sleep(settle);
        self.stream.set_nonblocking(true).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        String::from_utf8_lossy(&out)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Redis Cluster's key slot: CRC16/XMODEM of the hash tag (or the key) mod 16384.
pub fn key_slot(key: &str) -> u16 {
    let b = key.as_bytes();
    let tagged = b.iter().position(|&c| c == b'{').and_then(|open| {
        let rest = &b[open + 1..];
        let close = rest.iter().position(|&c| c == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    let data = tagged.unwrap_or(b);
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// A verified call's observation at `scenarios::at(t)`, its NPA-NXX read from a NANP number.
pub fn obs<'a>(
    call: &'a str,
    ani: &'a tollgate_core::E164,
    dnis: Option<&'a str>,
    t: u64,
) -> tollgate_risk::Observation<'a> {
    let d = ani.digits();
    let npa_nxx = (d.len() == 11 && d.starts_with('1'))
        .then(|| (d[1..4].parse().unwrap(), d[4..7].parse().unwrap()));
    tollgate_risk::Observation {
        call_id: call,
        ani,
        dnis,
        npa_nxx,
        now: scenarios::at(t),
        trust: tollgate_risk::Trust::Verified,
    }
}
