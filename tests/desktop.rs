//! The agent desktop page in headless Chromium, driven over WebDriver (chromedriver, started
//! by the test on its own port): log in with an agent token, send a call over UDP, and the
//! card appears with the CRM caller name and the call's risk badge; and the shadow rules view
//! (`/desktop/shadow`) with an admin token shows the running summary. Saves screenshots.
//!
//! Needs the Debian packages chromium and chromium-driver (.ci/run installs them); without
//! them the test fails, it does not skip.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod http_support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_support::*;
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            PathBuf::from("/usr/bin"),
            PathBuf::from("/usr/lib/chromium"),
        ])
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// chromedriver on a free port; killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Self {
        let bin = find_binary(&["chromedriver"]).unwrap_or_else(|| {
            panic!(
                "chromedriver not found: apt-get install chromium chromium-driver (.ci/run does)"
            )
        });
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        loop {
            if let Ok(r) = http().get(format!("{}/status", d.url)).send().await {
                let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap_or_default();
                if v["value"]["ready"] == true {
                    return d;
                }
            }
            assert!(start.elapsed() < WAIT, "chromedriver never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One browser session, spoken to in plain W3C WebDriver JSON.
struct Browser {
    base: String,
}

impl Browser {
    async fn new(driver: &Driver, chromium: &Path) -> Self {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1100,900"]
            }
        }}});
        let v = Self::send("POST", &format!("{}/session", driver.url), Some(caps)).await;
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"));
        Self {
            base: format!("{}/session/{id}", driver.url),
        }
    }

    async fn send(method: &str, url: &str, body: Option<Value>) -> Value {
        let c = http();
        let req = match method {
            "POST" => c
                .post(url)
                .header("content-type", "application/json")
                .body(body.unwrap_or_else(|| json!({})).to_string()),
            "DELETE" => c.delete(url),
            _ => c.get(url),
        };
        let resp = req.send().await.unwrap();
        serde_json::from_str(&resp.text().await.unwrap()).unwrap()
    }

    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        Self::send(method, &format!("{}{path}", self.base), body).await
    }

    async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url }))).await;
    }

    /// The element matching `css`, if there is one now.
    async fn find(&self, css: &str) -> Option<String> {
        let v = self
            .cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v["value"][ELEMENT].as_str().map(str::to_owned)
    }

    /// Waits for an element matching `css` (the page updates from live events).
    async fn wait_for(&self, css: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(e) = self.find(css).await {
                return e;
            }
            assert!(start.elapsed() < WAIT, "{css:?} never appeared on the page");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn text(&self, css: &str) -> String {
        let e = self.wait_for(css).await;
        let v = self.cmd("GET", &format!("/element/{e}/text"), None).await;
        v["value"].as_str().unwrap_or_default().to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.wait_for(css).await;
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let e = self.wait_for(css).await;
        self.cmd("POST", &format!("/element/{e}/click"), None).await;
    }

    async fn screenshot(&self, to: &Path) {
        use base64::Engine as _;
        let v = self.cmd("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v["value"].as_str().expect("screenshot data"))
            .unwrap();
        std::fs::write(to, png).unwrap();
    }

    async fn close(self) {
        self.cmd("DELETE", "", None).await;
    }
}

#[tokio::test]
async fn desktop_shows_a_live_card_with_the_caller_and_risk_badge() {
    let chromium =
        find_binary(&["chromium", "chromium-browser", "google-chrome"]).unwrap_or_else(|| {
            panic!("chromium not found: apt-get install chromium chromium-driver (.ci/run does)")
        });
    // CRM from the shipped directory file; the risk engine on its in-memory store.
    let dir = tempfile::tempdir().unwrap();
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/directory.csv");
    let text = format!(
        "{}\n[crm]\nkind = \"file\"\n[crm.file]\npath = \"{}\"\n\n[risk]\nstore = \"memory\"\nlist_file = \"lists.json\"\n",
        config(""),
        directory.display()
    );
    let path = dir.path().join("tollgate.toml");
    std::fs::write(&path, &text).unwrap();
    let engine = Engine::start_file(&path).await;

    let driver = Driver::start().await;
    let browser = Browser::new(&driver, &chromium).await;
    browser.goto(&format!("{}/desktop", engine.base())).await;
    browser.type_into("#token", AGENT_GENERAL).await;
    browser.click("#login").await;
    // Logged in and subscribed: the status pill says live once the stream's hello arrives.
    let start = Instant::now();
    while browser.text("#status").await != "live" {
        assert!(start.elapsed() < WAIT, "the desktop never went live");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let form = browser.wait_for("#login-form").await;
    let shown = browser
        .cmd("GET", &format!("/element/{form}/displayed"), None)
        .await;
    assert_eq!(
        shown["value"], false,
        "the login form is hidden once logged in"
    );

    // Aisha Johnson (config/directory.csv) calls a number that routes to `general`.
    let mut sse = Sse::subscribe(
        &format!("{}/v1/pops/stream?queue=general", engine.base()),
        AGENT_GENERAL,
    )
    .await;
    let r = call(engine.udp, "+18005550199", "+13125550147", "desktop-1").await;
    let call_ref = contact_ref(&r);
    let pop = sse.pop().await;
    let level = pop["risk"]["level"]
        .as_str()
        .expect("the call was assessed");

    let card = format!("li.pop[data-call-ref=\"{call_ref}\"]");
    browser.wait_for(&card).await;
    assert_eq!(
        browser.text(&format!("{card} .caller-name")).await,
        "Aisha Johnson"
    );
    assert_eq!(
        browser.text(&format!("{card} .risk-badge")).await,
        format!("Risk: {level}")
    );
    assert!(browser
        .text(&format!("{card} .company"))
        .await
        .contains("Lakeshore Dental Group"));
    assert_eq!(browser.text(&format!("{card} .tier-badge")).await, "gold");

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("desktop.png");
    browser.screenshot(&shot).await;
    println!("desktop screenshot: {}", shot.display());
    browser.close().await;
    engine.stop().await;
}

#[tokio::test]
async fn the_shadow_page_shows_the_running_summary() {
    let chromium =
        find_binary(&["chromium", "chromium-browser", "google-chrome"]).unwrap_or_else(|| {
            panic!("chromium not found: apt-get install chromium chromium-driver (.ci/run does)")
        });
    // A shadow whose rules reject every caller (the default set's catch-all is unreachable).
    let dir = tempfile::tempdir().unwrap();
    let shadow = dir.path().join("shadow");
    std::fs::create_dir_all(&shadow).unwrap();
    std::fs::copy(routes_dir().join("queues.toml"), shadow.join("queues.toml")).unwrap();
    std::fs::write(
        shadow.join("default.toml"),
        "name = \"default\"\ntime_zone = \"America/New_York\"\n\n[[rule]]\nname = \"no-valid\"\n\
         when = { valid = true }\nreject = 403\n\n[[rule]]\nname = \"no-invalid\"\n\
         when = { valid = false }\nreject = 404\n\n[[rule]]\nname = \"unreachable\"\nqueue = \"general\"\n",
    )
    .unwrap();
    let text = config("").replace(
        "[log]",
        &format!("shadow_dir = \"{}\"\n\n[log]", shadow.display()),
    );
    let engine = Engine::start(&text).await;

    let driver = Driver::start().await;
    let browser = Browser::new(&driver, &chromium).await;
    browser
        .goto(&format!("{}/desktop/shadow", engine.base()))
        .await;
    // An agent token may not see it.
    browser.type_into("#token", AGENT_GENERAL).await;
    browser.click("#login").await;
    let start = Instant::now();
    while !browser.text("#login-error").await.contains("refused") {
        assert!(start.elapsed() < WAIT, "an agent token was not refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.type_into("#token", ADMIN).await;
    browser.click("#login").await;

    for i in 0..3 {
        let r = call(
            engine.udp,
            "+18005550100",
            "+12125550123",
            &format!("sh-{i}"),
        )
        .await;
        assert!(r.starts_with("SIP/2.0 302 "), "the live answer stands: {r}");
    }
    let start = Instant::now();
    while browser.text("#calls").await != "3" {
        assert!(start.elapsed() < WAIT, "the page never showed the 3 calls");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(browser.text("#moved").await, "3");
    assert_eq!(browser.text("#share").await, "100.0 %");
    assert!(browser
        .text("#state")
        .await
        .contains("never changes an answer"));
    let pair = browser.text("#pairs tbody tr").await;
    assert!(pair.contains("default/no-valid"), "{pair}");
    assert!(pair.contains("403"), "{pair}");
    assert!(pair.contains("302 support"), "{pair}");
    assert!(browser.text("#dnis tbody tr").await.contains("18005550100"));

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("shadow.png");
    browser.screenshot(&shot).await;
    println!("shadow page screenshot: {}", shot.display());
    browser.close().await;
    engine.stop().await;
}
