//! HTTP, SSE and WebSocket test clients, shared by the API crate's tests and the server's
//! end-to-end tests (tests/http_support includes this file by path).

use std::time::Duration;

use futures_util::StreamExt;

/// How long a stream read may wait before the test fails.
const STREAM_WAIT: Duration = Duration::from_secs(15);

/// One Server-Sent Events subscription read off a real HTTP response.
pub struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    /// Opens the stream and waits for its `hello` event (the subscription is live after it).
    pub async fn open(url: &str, token: Option<&str>) -> Result<Self, (u16, String)> {
        Self::open_with(url, token, &[]).await
    }

    /// [`Sse::open`] with extra request headers (`Last-Event-ID`, say).
    pub async fn open_with(
        url: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Self, (u16, String)> {
        let mut req = http().get(url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        if !resp.status().is_success() {
            let code = resp.status().as_u16();
            return Err((code, resp.text().await.unwrap()));
        }
        let mut s = Self {
            resp,
            buf: String::new(),
        };
        let (ev, _) = s.next().await;
        assert_eq!(ev, "hello");
        Ok(s)
    }

    /// [`Sse::open`] with a token, for tests where the stream must be accepted.
    pub async fn subscribe(url: &str, token: &str) -> Self {
        match Self::open(url, Some(token)).await {
            Ok(s) => s,
            Err((code, body)) => panic!("stream refused: {url}: {code} {body}"),
        }
    }

    /// The next event's (name, data).
    pub async fn next(&mut self) -> (String, String) {
        tokio::time::timeout(STREAM_WAIT, async {
            loop {
                if let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let mut name = String::from("message");
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            name = v.trim().to_owned();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        }
                    }
                    if data.is_empty() && name == "message" {
                        continue; // keep-alive comment
                    }
                    return (name, data);
                }
                let chunk = self.resp.chunk().await.unwrap().expect("stream ended");
                self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
        .expect("no SSE event in time")
    }

    /// The next `pop` event, parsed.
    pub async fn pop(&mut self) -> serde_json::Value {
        loop {
            let (ev, data) = self.next().await;
            if ev == "pop" {
                return serde_json::from_str(&data).unwrap();
            }
        }
    }
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket subscription, after its hello message.
pub async fn ws(url: &str, token: &str) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let hello = ws_next(&mut ws).await;
    assert_eq!(hello["type"], "hello");
    ws
}

pub async fn ws_next(ws: &mut Ws) -> serde_json::Value {
    use tokio_tungstenite::tungstenite::Message;
    tokio::time::timeout(STREAM_WAIT, async {
        loop {
            match ws.next().await.expect("ws ended").unwrap() {
                Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                _ => continue,
            }
        }
    })
    .await
    .expect("no WebSocket message in time")
}

/// A plain HTTP client (reqwest is built without a default crypto provider).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
