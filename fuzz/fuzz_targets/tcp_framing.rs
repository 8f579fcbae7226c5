//! The TCP read loop's framing (`message::drain_frames`, which the server's tcp.rs calls after
//! every read) must frame the same messages whatever the stream's split into reads.
//!
//! Input: a byte `n` (up to 15 split points), `2 * n` bytes of little-endian u16 split offsets,
//! then the stream. The stream is framed once as one read, once split at the chosen offsets
//! (sorted), and once a byte per read (short streams only). Each run gives the messages handed
//! over (whole and missing-length), whether the connection closed, and what was left in the
//! buffer at the end (keep-alive CRLFs before it aside); the three must be equal, except the
//! bytes an `Invalid` carries (the buffer at the time) and its reason: a head with no end yet
//! is "headers too large" where the whole stream shows a "message too large".
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_sip::message::{drain_frames, Framed};

#[derive(Debug, PartialEq, Eq)]
struct Run {
    messages: Vec<(bool, Vec<u8>)>,
    closed: bool,
    left: Vec<u8>,
}

fn run<'a>(reads: impl Iterator<Item = &'a [u8]>) -> Run {
    let mut buf = Vec::new();
    let mut messages = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        let drained = drain_frames(&mut buf, |piece| match piece {
            Framed::Message(m) => messages.push((true, m.to_vec())),
            Framed::MissingLength(m) => messages.push((false, m.to_vec())),
            Framed::Invalid(all, why) => {
                assert!(!why.is_empty());
                assert!(!all.is_empty());
            }
        });
        if drained.is_none() {
            return Run {
                messages,
                closed: true,
                left: Vec::new(),
            };
        }
    }
    // Keep-alive CRLFs before a partial message stay in the buffer until it is whole, and go
    // when a read ends right after them: the same bytes, not yet a message either way.
    let start = buf
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(buf.len());
    Run {
        messages,
        closed: false,
        left: buf.split_off(start),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 16);
    let Some((cuts, stream)) = rest.split_at_checked(2 * n) else {
        return;
    };
    let mut points: Vec<usize> = cuts
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (stream.len() + 1))
        .collect();
    points.sort_unstable();
    let whole = run(std::iter::once(stream));
    let mut pieces = Vec::new();
    let mut at = 0;
    for p in points.into_iter().chain([stream.len()]) {
        pieces.push(&stream[at..p]);
        at = p;
    }
    let split = run(pieces.into_iter());
    assert_eq!(split, whole, "split at chosen offsets");
    if stream.len() <= 2048 {
        let bytewise = run(stream.chunks(1));
        assert_eq!(bytewise, whole, "a byte per read");
    }
    // Everything framed is a prefix of the stream, in order, after keep-alives.
    let mut pos = 0;
    for (_, m) in &whole.messages {
        while stream.get(pos).is_some_and(|b| matches!(b, b'\r' | b'\n')) {
            pos += 1;
        }
        assert_eq!(stream.get(pos..pos + m.len()), Some(&m[..]));
        pos += m.len();
    }
});
