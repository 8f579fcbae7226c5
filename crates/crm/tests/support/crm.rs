//! A real HTTP/1.1 CRM on 127.0.0.1 for tests and benchmarks: counts requests, remembers the
//! last one, and can be told to be slow, fail, or answer garbage.
//!
//! The caller's number is the first run of 7 or more digits in the request target or body
//! (after `%2B` decoding), so any URL or body template reaches the right record. Unknown
//! numbers get 404. Connections are kept alive, as a pooled client expects.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Wait this long before answering normally.
    Slow(Duration),
    /// Answer every request with this status.
    Fail(u16),
    /// 200 with a body that is not JSON.
    BadJson,
}

/// What the server saw in the last request.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: HashMap<String, String>,
    pub body: String,
}

#[derive(Default)]
struct State {
    requests: AtomicUsize,
    mode: Mutex<Option<Mode>>,
    records: Mutex<HashMap<String, String>>,
    last: Mutex<Seen>,
}

pub struct Crm {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Crm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Crm {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&shared)));
            }
        });
        Self { addr, state, task }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The JSON body answered for this number (E.164 digits, no `+`).
    pub fn set_record(&self, digits: &str, json: &str) {
        self.state
            .records
            .lock()
            .unwrap()
            .insert(digits.to_owned(), json.to_owned());
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = Some(mode);
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> Seen {
        self.state.last.lock().unwrap().clone()
    }
}

async fn serve(mut stream: TcpStream, state: Arc<State>) {
    let mut buf = Vec::new();
    loop {
        let Some(head_end) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let method = request_line.next().unwrap_or_default().to_owned();
        let target = request_line.next().unwrap_or_default().to_owned();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        buf.drain(..head_end + 4);
        while buf.len() < length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..length).collect();
        let body = String::from_utf8_lossy(&body).into_owned();

        state.requests.fetch_add(1, Ordering::SeqCst);
        let key = number_in(&format!("{target} {body}"));
        *state.last.lock().unwrap() = Seen {
            method,
            target,
            headers,
            body,
        };
        let mode = state.mode.lock().unwrap().clone().unwrap_or(Mode::Normal);
        let (status, answer) = match mode {
            Mode::Fail(code) => (code, "{\"error\":\"down\"}".to_owned()),
            Mode::BadJson => (200, "{\"id\": 12, oops".to_owned()),
            Mode::Slow(d) => {
                tokio::time::sleep(d).await;
                record(&state, key.as_deref())
            }
            Mode::Normal => record(&state, key.as_deref()),
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn record(state: &State, key: Option<&str>) -> (u16, String) {
    match key.and_then(|k| state.records.lock().unwrap().get(k).cloned()) {
        Some(json) => (200, json),
        None => (404, String::new()),
    }
}

async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(at);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The first run of 7+ digits, after turning `%2B` back into `+`.
fn number_in(text: &str) -> Option<String> {
    let text = text.replace("%2B", "+").replace("%2b", "+");
    let mut run = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else if run.len() >= 7 {
            return Some(run);
        } else {
            run.clear();
        }
    }
    (run.len() >= 7).then_some(run)
}
