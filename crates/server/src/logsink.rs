//! The log's way to stdout off the call path: lines go into a bounded queue, and one thread
//! writes them, those gathered within [`LINGER`] in one `write` (stdout is line-buffered: a
//! line at a time would be one system call, and one wake-up of the writer, per call). A call never waits for the disk or the pipe: with
//! the queue full (`QUEUE_LINES`), a line is dropped and counted
//! (`tollgate_log_lines_dropped_total`) rather than stall the node.
//!
//! `serve` installs it ([`install`]) for the JSON log; the decision line is then written
//! straight into it by [`crate::decision::DecisionRecord::log`] ([`json_line`]), and every
//! other event by the tracing subscriber through [`SinkWriter`], so lines keep their order.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};

/// Lines waiting for the writer, at most (~1 kB each: ~16 MB at worst).
pub const QUEUE_LINES: usize = 16_384;

/// The installed sink: the queue's sending side.
#[derive(Debug)]
struct Sink {
    tx: SyncSender<Vec<u8>>,
    stop: Arc<AtomicBool>,
    json: bool,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Whether [`install`] ran for the JSON log: the decision line is then written straight into
/// the sink ([`json_line`]).
pub fn json() -> bool {
    SINK.get().is_some_and(|s| s.json)
}

/// Hands a whole line (ending in `\n`) to the writer; dropped and counted if the queue is full.
/// The line comes back when no sink is installed.
pub fn push(line: Vec<u8>) -> Result<(), Vec<u8>> {
    let Some(sink) = SINK.get() else {
        return Err(line);
    };
    match sink.tx.try_send(line) {
        Ok(()) | Err(TrySendError::Disconnected(_)) => {}
        Err(TrySendError::Full(_)) => {
            metrics::counter!("tollgate_log_lines_dropped_total").increment(1);
        }
    }
    Ok(())
}

/// Flushes what is queued when dropped (at the end of `serve`), waiting for the writer.
#[derive(Debug)]
pub struct Guard {
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(sink) = SINK.get() {
            sink.stop.store(true, Ordering::SeqCst);
            // Wakes the writer if it waits on an empty queue.
            let _ = sink.tx.try_send(Vec::new());
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Starts the writer thread and installs the sink (once per process; a second call installs
/// nothing and returns a guard that does nothing). `json`: the log's format is JSON.
pub fn install(json: bool) -> Guard {
    let (tx, rx) = sync_channel(QUEUE_LINES);
    let stop = Arc::new(AtomicBool::new(false));
    if SINK
        .set(Sink {
            tx,
            stop: Arc::clone(&stop),
            json,
        })
        .is_err()
    {
        return Guard { writer: None };
    }
    let writer = std::thread::Builder::new()
        .name("tollgate-log".into())
        .spawn(move || write_lines(&rx, &stop))
        .ok();
    Guard { writer }
}

/// How long the writer lets lines gather after the first of a batch: at 1,000 calls/s a line
/// each, one `write` and one wake-up per 10 ms instead of a thousand of each (the writer, while
/// it sleeps, is not waiting on the queue, so a call's `push` wakes nobody). A line reaches
/// stdout at most this late (and a `kill -9` loses at most this much).
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(10);

/// A batch is written once it holds this much, lingering or not.
const BATCH_BYTES: usize = 256 << 10;

/// The writer: the lines queued within [`LINGER`] of a batch's first are written with one
/// `write_all` to stdout.
fn write_lines(rx: &Receiver<Vec<u8>>, stop: &AtomicBool) {
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH_BYTES);
    while let Ok(line) = rx.recv() {
        batch.extend_from_slice(&line);
        if !stop.load(Ordering::SeqCst) && batch.len() < BATCH_BYTES {
            std::thread::sleep(LINGER);
        }
        while batch.len() < BATCH_BYTES {
            match rx.try_recv() {
                Ok(line) => batch.extend_from_slice(&line),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&batch);
            let _ = out.flush();
            batch.clear();
        }
        if stop.load(Ordering::SeqCst) {
            // Whatever is still queued goes too.
            while let Ok(line) = rx.try_recv() {
                batch.extend_from_slice(&line);
            }
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&batch);
            let _ = out.flush();
            return;
        }
    }
}

/// The tracing subscriber's writer: collects one event's text and hands it to the sink when
/// the event is written (or to stdout directly when no sink is installed).
#[derive(Debug, Default)]
pub struct SinkWriter {
    buf: Vec<u8>,
}

impl std::io::Write for SinkWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SinkWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if let Err(line) = push(std::mem::take(&mut self.buf)) {
            let _ = std::io::stdout().lock().write_all(&line);
        }
    }
}

/// `MakeWriter` for the tracing subscriber.
pub fn make_writer() -> SinkWriter {
    SinkWriter::default()
}

/// One JSON log line as the tracing subscriber's JSON format writes it (`flatten_event`):
/// `timestamp` (RFC 3339, microseconds), `level`, `message`, the fields of `record` (an
/// object), the extra `(name, value)` number fields, then `target`, and a newline.
pub fn json_line(
    message: &str,
    target: &str,
    record: &impl serde::Serialize,
    extra: &[(&str, u64)],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1536);
    let now = jiff::Timestamp::now();
    out.extend_from_slice(b"{\"timestamp\":\"");
    let _ = write!(out, "{}", now.strftime("%Y-%m-%dT%H:%M:%S.%6fZ"));
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":");
    let _ = serde_json::to_writer(&mut out, message);
    // The record's object joins the line's: its `{` becomes the separating `,` and its `}` goes
    // (an empty object leaves nothing).
    let start = out.len();
    let written = serde_json::to_writer(&mut out, record).is_ok();
    match out.get_mut(start..) {
        Some([open @ b'{', _, .., b'}']) if written => {
            *open = b',';
            out.pop();
        }
        _ => out.truncate(start),
    }
    for (name, value) in extra {
        out.push(b',');
        let _ = serde_json::to_writer(&mut out, name);
        let _ = write!(out, ":{value}");
    }
    out.extend_from_slice(b",\"target\":");
    let _ = serde_json::to_writer(&mut out, target);
    out.extend_from_slice(b"}\n");
    out
}
