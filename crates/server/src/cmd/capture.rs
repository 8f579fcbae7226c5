//! The INVITEs of a SIP capture (`tollgate diff --pcap`): pcap or pcapng files as tcpdump,
//! dumpcap and sngrep write them, read with `pcap-parser`; link, IP, UDP and TCP headers with
//! `etherparse`; TCP reassembled per flow by sequence number and split into messages by the SIP
//! layer's own framing ([`tollgate_sip::message::drain_frames`]). Only INVITE requests come out,
//! each once (a retransmission has the same Call-ID, CSeq and Via branch), with the address it
//! came from and when; what the live node makes of them is the caller's business
//! ([`crate::cmd::explain::facts_for`]).
//!
//! A capture is network input: nothing here panics. A bad packet is a [`Problem`] naming its
//! number (Wireshark's frame number) and byte offset, and reading goes on with the next one; so
//! does a pcapng block whose content is corrupt but whose frame (its length at both ends)
//! holds. A legacy record header that cannot be read (a corrupt length) or a truncated file
//! ends the reading, as pcap has no marker to find the next record by, and what was read is
//! still handed over.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use etherparse::{EtherType, NetSlice, SlicedPacket, TransportSlice};
use jiff::Timestamp;
use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{Linktype, PcapBlockOwned, PcapError};
use tollgate_core::Transport;
use tollgate_sip::message::{Framed, HeaderName, Message, StartLine, MAX_MESSAGE};

/// The reader's buffer: a whole record must fit (a SIP packet is at most 64 KiB plus headers),
/// so a record claiming more is a corrupt header, not a reason to allocate.
const BUFFER: usize = 1 << 20;
/// TCP flows followed at once; past it the flow idle longest is dropped.
pub const MAX_FLOWS: usize = 1024;
/// Out-of-order bytes held per TCP flow waiting for a missing segment; past it the gap is
/// declared lost and the stream resynchronised at the next message.
pub const MAX_PENDING: usize = 256 * 1024;
/// How long (capture time) an INVITE's key is remembered to recognise its retransmissions:
/// 64 × T1, the INVITE transaction's lifetime (RFC 3261 timer B).
const DEDUPE_SECONDS: i64 = 64;

/// One INVITE read from the capture.
#[derive(Clone, Debug)]
pub struct Invite {
    /// The packet it came in (the one that completed it, for TCP), numbered from 1 as Wireshark
    /// numbers frames.
    pub packet: u64,
    pub at: Option<Timestamp>,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub transport: Transport,
    pub text: String,
    /// What the system in the capture answered it, when the capture holds that.
    pub old: Option<OldAnswer>,
}

/// What the system the capture was taken in front of did with an INVITE: for a proxy, where
/// it last sent the call on (an INVITE from `--to` with the same Call-ID), else its final
/// response (matched by Call-ID, CSeq and Via branch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OldAnswer {
    Response {
        status: u16,
        reason: String,
        /// A 3xx's first Contact, `user@host` (no scheme, port kept, no parameters).
        contact: Option<String>,
    },
    Forwarded {
        /// The Request-URI it was sent on to, `user@host`.
        target: String,
    },
}

impl OldAnswer {
    pub fn describe(&self) -> String {
        match self {
            OldAnswer::Response {
                status,
                contact: Some(c),
                ..
            } => format!("{status} → {c}"),
            OldAnswer::Response { status, reason, .. } => format!("{status} {reason}"),
            OldAnswer::Forwarded { target } => format!("forwarded to {target}"),
        }
    }

    /// Whether a decision gives the same answer: the same status, and for a redirect or a
    /// forwarded call the same `queue@host` (ASCII case aside).
    pub fn same_as(&self, d: &tollgate_core::Decision) -> bool {
        use tollgate_core::DecisionAction;
        let target = |t: &tollgate_core::Target| format!("{}@{}", t.queue, t.host);
        match (self, &d.action) {
            (
                OldAnswer::Response {
                    status, contact, ..
                },
                DecisionAction::Route(t),
            ) => {
                *status == 302
                    && contact
                        .as_deref()
                        .is_some_and(|c| c.eq_ignore_ascii_case(&target(t)))
            }
            (OldAnswer::Response { status, .. }, DecisionAction::Reject { code, .. }) => {
                status == code
            }
            (OldAnswer::Forwarded { target: to }, DecisionAction::Route(t)) => {
                to.eq_ignore_ascii_case(&target(t))
            }
            (OldAnswer::Forwarded { .. }, DecisionAction::Reject { .. }) => false,
        }
    }
}

/// `user@host[:port]` of a SIP URI (or a name-addr holding one): no scheme, no parameters.
fn user_host(uri: &str) -> Option<String> {
    let uri = match (uri.find('<'), uri.find('>')) {
        (Some(a), Some(b)) if a < b => uri.get(a + 1..b)?,
        _ => uri.trim(),
    };
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .or_else(|| uri.strip_prefix("tel:"))?;
    let end = rest.find([';', '?', '>']).unwrap_or(rest.len());
    rest.get(..end).map(str::to_owned).filter(|s| !s.is_empty())
}

/// What could not be read, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The packet, when the problem is one (a pcapng block of another kind has none).
    pub packet: Option<u64>,
    /// The byte offset of the packet's record in the file.
    pub offset: u64,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.packet {
            Some(n) => write!(
                f,
                "packet {n} (byte offset {}): {}",
                self.offset, self.message
            ),
            None => write!(f, "byte offset {}: {}", self.offset, self.message),
        }
    }
}

/// What the reading counted besides the INVITEs.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub packets: u64,
    pub invites: u64,
    /// INVITEs seen again (same Call-ID, CSeq and Via branch), not replayed twice.
    pub retransmissions: u64,
    /// SIP messages other than INVITE requests (responses, ACKs, OPTIONS, ...).
    pub other_sip: u64,
    /// Packets that are not SIP over UDP or TCP (RTP, DNS, ARP, ...).
    pub not_sip: u64,
    /// TCP segments whose bytes had all been seen already.
    pub tcp_duplicates: u64,
    /// IP fragments (not reassembled: reported).
    pub fragments: u64,
    /// Packets to other addresses than `--to`.
    pub filtered: u64,
}

/// Only packets sent to this address (and port) count: the node or the system being replaced,
/// not what it sends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Destination {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl std::str::FromStr for Destination {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Self {
                ip: a.ip(),
                port: Some(a.port()),
            });
        }
        s.trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
            .map(|ip| Self { ip, port: None })
            .map_err(|_| format!("--to {s:?}: an IP address, or IP:PORT"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Flow {
    src: SocketAddr,
    dst: SocketAddr,
}

/// One direction of a TCP connection being reassembled.
#[derive(Debug, Default)]
struct Stream {
    /// The sequence number of the next byte expected, and its offset in the stream.
    next_seq: Option<u32>,
    next_abs: u64,
    /// Bytes in order, not yet a whole message (at most two messages' worth).
    buf: Vec<u8>,
    /// Segments ahead of `next_abs`, by stream offset.
    pending: BTreeMap<u64, Vec<u8>>,
    pending_bytes: usize,
    /// The stream was cut (a gap, a frame that could not be split): skip to the next start line.
    resync: bool,
    last_packet: u64,
}

/// Reads a capture one INVITE at a time ([`CaptureReader::next_invite`]).
pub struct CaptureReader {
    reader: Box<dyn PcapReaderIterator + Send>,
    /// Data packets read so far (the last one's number).
    packet: u64,
    /// Byte offset of the next block.
    offset: u64,
    legacy: Option<(Linktype, bool)>,
    /// pcapng: the current section's interfaces (link type, timestamp units per second,
    /// offset in seconds).
    interfaces: Vec<(Linktype, u64, i64)>,
    flows: HashMap<Flow, Stream>,
    seen: HashSet<String>,
    seen_order: VecDeque<(i64, String)>,
    /// INVITEs read, in capture order, each waiting for its answer in the capture (or for
    /// `DEDUPE_SECONDS` of capture time, or the end), with its answer key.
    ready: VecDeque<(Invite, String)>,
    /// Answers to waiting INVITEs by key (Call-ID, CSeq, branch), and INVITEs sent on by
    /// Call-ID.
    answers: HashMap<String, OldAnswer>,
    forwarded: HashMap<String, OldAnswer>,
    /// The keys of the waiting INVITEs, and how many wait per Call-ID.
    waiting: HashSet<String>,
    waiting_calls: HashMap<String, usize>,
    /// The latest packet time seen (seconds).
    now: i64,
    to: Option<Destination>,
    done: bool,
    unsupported_link: HashSet<i32>,
    /// pcapng: the current section's byte order (big-endian), to step over a corrupt block.
    section: Option<bool>,
    pub problems: Vec<Problem>,
    pub stats: Stats,
}

impl fmt::Debug for CaptureReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureReader")
            .field("packet", &self.packet)
            .field("offset", &self.offset)
            .field("flows", &self.flows.len())
            .field("problems", &self.problems.len())
            .finish_non_exhaustive()
    }
}

impl CaptureReader {
    /// Opens a pcap or pcapng file; an error when it is neither (or unreadable).
    pub fn open(path: &Path, to: Option<Destination>) -> Result<Self, String> {
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| format!("{name}: {e}"))?;
        Self::from_reader(&name, file, to)
    }

    /// [`CaptureReader::open`] over any reader (`name` names it in errors).
    pub fn from_reader(
        name: &str,
        input: impl std::io::Read + Send + 'static,
        to: Option<Destination>,
    ) -> Result<Self, String> {
        let reader = pcap_parser::create_reader(BUFFER, input).map_err(|e| match e {
            PcapError::Eof => format!("{name}: empty file"),
            PcapError::HeaderNotRecognized => {
                format!("{name}: not a pcap or pcapng capture (unknown file header)")
            }
            PcapError::Incomplete(_) | PcapError::UnexpectedEof => {
                format!("{name}: truncated in the file header")
            }
            other => format!("{name}: not a readable capture: {other:?}"),
        })?;
        Ok(Self {
            reader,
            packet: 0,
            offset: 0,
            legacy: None,
            interfaces: Vec::new(),
            flows: HashMap::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            ready: VecDeque::new(),
            answers: HashMap::new(),
            forwarded: HashMap::new(),
            waiting: HashSet::new(),
            waiting_calls: HashMap::new(),
            now: 0,
            to,
            done: false,
            unsupported_link: HashSet::new(),
            section: None,
            problems: Vec::new(),
            stats: Stats::default(),
        })
    }

    /// The next INVITE of the capture, in capture order; `None` at the end (or after a record
    /// that cannot be read: see [`CaptureReader::problems`]).
    pub fn next_invite(&mut self) -> Option<Invite> {
        loop {
            if let Some((front, key)) = self.ready.front() {
                // Wait for the final response: a proxy may send the call on more than once
                // (a redirect followed), and the last place it sent it is what it did.
                let answered = self.answers.contains_key(key);
                let waited = front
                    .at
                    .is_none_or(|t| self.now.saturating_sub(t.as_second()) > DEDUPE_SECONDS);
                if answered || waited || self.done {
                    if let Some((mut invite, key)) = self.ready.pop_front() {
                        let call_id = call_id_of(&key).to_owned();
                        self.waiting.remove(&key);
                        let left = match self.waiting_calls.get_mut(&call_id) {
                            Some(n) => {
                                *n = n.saturating_sub(1);
                                *n
                            }
                            None => 0,
                        };
                        if left == 0 {
                            self.waiting_calls.remove(&call_id);
                        }
                        let response = self.answers.remove(&key);
                        let forwarded = if left > 0 {
                            self.forwarded.get(&call_id).cloned()
                        } else {
                            self.forwarded.remove(&call_id)
                        };
                        invite.old = forwarded.or(response);
                        return Some(invite);
                    }
                }
            }
            if self.done {
                return None;
            }
            self.step();
        }
    }

    fn problem(&mut self, packet: u64, offset: u64, message: impl Into<String>) {
        self.problems.push(Problem {
            packet: Some(packet),
            offset,
            message: message.into(),
        });
    }

    /// Reads one block.
    fn step(&mut self) {
        let at = self.offset;
        let next = self.packet + 1;
        let mut failure = None;
        let packet = match self.reader.next() {
            Ok((len, block)) => {
                let packet = match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        self.legacy = Some((h.network, h.is_nanosecond_precision()));
                        None
                    }
                    PcapBlockOwned::Legacy(b) => {
                        let (link, nanos) = self.legacy.unwrap_or((Linktype::ETHERNET, false));
                        let frac = i128::from(b.ts_usec) * if nanos { 1 } else { 1000 };
                        let ns = i128::from(b.ts_sec) * 1_000_000_000 + frac;
                        let short = (b.caplen < b.origlen).then_some((b.caplen, b.origlen));
                        Some((link, Some(ns), b.data.to_vec(), short))
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(shb)) => {
                        self.interfaces.clear();
                        self.section = Some(shb.big_endian());
                        None
                    }
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        self.interfaces.push((
                            idb.linktype,
                            idb.ts_resolution().unwrap_or(1_000_000).max(1),
                            idb.if_tsoffset,
                        ));
                        None
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        let iface = usize::try_from(epb.if_id)
                            .ok()
                            .and_then(|i| self.interfaces.get(i))
                            .copied();
                        let (link, ns) = match iface {
                            Some((link, res, off)) => {
                                let units =
                                    (u128::from(epb.ts_high) << 32) | u128::from(epb.ts_low);
                                let res = u128::from(res);
                                let ns = i128::try_from(units / res * 1_000_000_000)
                                    .ok()
                                    .zip(i128::try_from((units % res) * 1_000_000_000 / res).ok())
                                    .map(|(s, f)| s + f + i128::from(off) * 1_000_000_000);
                                (Some(link), ns)
                            }
                            None => (None, None),
                        };
                        let short = (epb.caplen < epb.origlen).then_some((epb.caplen, epb.origlen));
                        match link {
                            Some(link) => Some((link, ns, epb.data.to_vec(), short)),
                            None => {
                                let id = epb.if_id;
                                self.reader.consume(len);
                                self.offset += len as u64;
                                self.packet = next;
                                self.stats.packets += 1;
                                self.problem(
                                    next,
                                    at,
                                    format!(
                                        "names interface {id}, which the section does not describe"
                                    ),
                                );
                                return;
                            }
                        }
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        let link = self.interfaces.first().map_or(Linktype::ETHERNET, |i| i.0);
                        Some((link, None, spb.data.to_vec(), None))
                    }
                    PcapBlockOwned::NG(_) => None,
                };
                self.reader.consume(len);
                self.offset += len as u64;
                packet
            }
            Err(PcapError::Eof) => {
                self.done = true;
                None
            }
            Err(PcapError::Incomplete(_)) => {
                if let Err(e) = self.reader.refill() {
                    let e = format!("{e:?}");
                    self.problem(next, at, format!("cannot read the file: {e}"));
                    self.done = true;
                }
                None
            }
            Err(PcapError::UnexpectedEof) => {
                failure = Some(Failure::Truncated);
                None
            }
            Err(PcapError::BufferTooSmall) => {
                failure = Some(Failure::TooLarge);
                None
            }
            Err(e) => {
                failure = Some(Failure::Corrupt(match e {
                    PcapError::NomError(_, kind) => format!("{kind:?}"),
                    other => format!("{other:?}"),
                }));
                None
            }
        };
        if let Some(f) = failure {
            if !self.skip_block(next, at, &f) {
                self.problem(next, at, f.message());
                self.done = true;
            }
            return;
        }
        if let Some((link, ns, data, short)) = packet {
            self.packet = next;
            self.stats.packets += 1;
            let ts = ns
                .and_then(|ns| i64::try_from(ns).ok())
                .and_then(|ns| Timestamp::from_nanosecond(i128::from(ns)).ok());
            if let Some(t) = ts {
                self.now = self.now.max(t.as_second());
            }
            if let Some((cap, orig)) = short {
                self.problem(
                    next,
                    at,
                    format!("only {cap} of its {orig} bytes were captured (snap length)"),
                );
            }
            self.packet_data(next, at, link, ts, &data);
        }
    }

    /// pcapng frames every block with its length at both ends: a block whose content cannot
    /// be read but whose frame holds is named and stepped over, and reading goes on. Whether
    /// it did (a legacy pcap record has no such frame: the reading stops there).
    fn skip_block(&mut self, next: u64, at: u64, failure: &Failure) -> bool {
        let Some(big) = self.section else {
            return false;
        };
        let word = |b: &[u8], i: usize| -> Option<u32> {
            let w: [u8; 4] = b.get(i..i + 4)?.try_into().ok()?;
            Some(if big {
                u32::from_be_bytes(w)
            } else {
                u32::from_le_bytes(w)
            })
        };
        let data = self.reader.data();
        let (Some(kind), Some(len)) = (word(data, 0), word(data, 4)) else {
            return false;
        };
        let Ok(len) = usize::try_from(len) else {
            return false;
        };
        if len < 12 || len % 4 != 0 || len > BUFFER {
            return false;
        }
        if data.len() < len {
            // Not all of it is in the buffer yet: read on, then try again.
            if self.reader.reader_exhausted() {
                return false;
            }
            return self.reader.refill().is_ok();
        }
        if word(data, len - 4) != Some(u32::try_from(len).unwrap_or(0)) {
            return false;
        }
        self.reader.consume(len);
        self.offset += len as u64;
        // Enhanced, simple and (obsolete) packet blocks hold packets.
        let message = format!("{}; the block is skipped", failure.what());
        if matches!(kind, 2 | 3 | 6) {
            self.packet = next;
            self.stats.packets += 1;
            self.problem(next, at, message);
        } else {
            self.problems.push(Problem {
                packet: None,
                offset: at,
                message: format!(
                    "a block of type {kind} after packet {}: {message}",
                    self.packet
                ),
            });
        }
        true
    }

    fn packet_data(&mut self, n: u64, at: u64, link: Linktype, ts: Option<Timestamp>, data: &[u8]) {
        let sliced = match link {
            Linktype::ETHERNET => SlicedPacket::from_ethernet(data),
            Linktype::LINUX_SLL => SlicedPacket::from_linux_sll(data),
            Linktype::LINUX_SLL2 => {
                // SLL2: protocol (2 bytes), reserved, interface, ARPHRD, packet type,
                // address length, address (8): 20 bytes, then the network header.
                match (data.first(), data.get(1), data.get(20..)) {
                    (Some(&a), Some(&b), Some(rest)) => {
                        SlicedPacket::from_ether_type(EtherType(u16::from_be_bytes([a, b])), rest)
                    }
                    _ => {
                        self.problem(n, at, "shorter than its Linux cooked (SLL2) header");
                        return;
                    }
                }
            }
            Linktype::NULL | Linktype::LOOP => match data.get(4..) {
                Some(rest) => SlicedPacket::from_ip(rest),
                None => {
                    self.problem(n, at, "shorter than its loopback header");
                    return;
                }
            },
            Linktype::RAW | Linktype::IPV4 | Linktype::IPV6 => SlicedPacket::from_ip(data),
            other => {
                if self.unsupported_link.insert(other.0) {
                    self.problem(
                        n,
                        at,
                        format!(
                            "link type {other} is not read (Ethernet, Linux cooked SLL/SLL2, \
                             loopback and raw IP are); its packets are skipped"
                        ),
                    );
                }
                self.stats.not_sip += 1;
                return;
            }
        };
        let p = match sliced {
            Ok(p) => p,
            Err(e) => {
                self.problem(n, at, format!("a corrupt packet: {e}"));
                return;
            }
        };
        let Some((src, dst, fragmented)) = (match &p.net {
            Some(NetSlice::Ipv4(ip)) => Some((
                IpAddr::V4(ip.header().source_addr()),
                IpAddr::V4(ip.header().destination_addr()),
                ip.payload().fragmented,
            )),
            Some(NetSlice::Ipv6(ip)) => Some((
                IpAddr::V6(ip.header().source_addr()),
                IpAddr::V6(ip.header().destination_addr()),
                ip.payload().fragmented,
            )),
            _ => None,
        }) else {
            self.stats.not_sip += 1;
            return;
        };
        if fragmented {
            self.stats.fragments += 1;
            self.problem(
                n,
                at,
                "an IP fragment: fragments are not reassembled, a call in them is not replayed",
            );
            return;
        }
        match &p.transport {
            Some(TransportSlice::Udp(u)) => {
                let flow = Flow {
                    src: SocketAddr::new(src, u.source_port()),
                    dst: SocketAddr::new(dst, u.destination_port()),
                };
                if !self.wanted(flow) {
                    return;
                }
                self.message(n, ts, flow, Transport::Udp, u.payload());
            }
            Some(TransportSlice::Tcp(t)) => {
                let flow = Flow {
                    src: SocketAddr::new(src, t.source_port()),
                    dst: SocketAddr::new(dst, t.destination_port()),
                };
                if !self.wanted(flow) {
                    return;
                }
                let seg = Segment {
                    seq: t.sequence_number(),
                    syn: t.syn(),
                    end: t.fin() || t.rst(),
                    payload: t.payload(),
                };
                self.tcp(n, at, ts, flow, &seg);
            }
            _ => self.stats.not_sip += 1,
        }
    }

    /// Whether `a` is the `--to` address (any address without one).
    fn is_system(&self, a: SocketAddr) -> bool {
        self.to
            .is_none_or(|d| d.ip == a.ip() && d.port.is_none_or(|p| p == a.port()))
    }

    /// Packets to the system, and (for its answers) from it.
    fn wanted(&mut self, flow: Flow) -> bool {
        let ok = self.is_system(flow.dst) || (self.to.is_some() && self.is_system(flow.src));
        if !ok {
            self.stats.filtered += 1;
        }
        ok
    }

    /// One TCP segment into its flow; every message it completes is handled.
    fn tcp(&mut self, n: u64, at: u64, ts: Option<Timestamp>, flow: Flow, seg: &Segment<'_>) {
        if !self.flows.contains_key(&flow) && self.flows.len() >= MAX_FLOWS {
            let idle = self
                .flows
                .iter()
                .min_by_key(|(_, s)| s.last_packet)
                .map(|(f, _)| *f);
            if let Some(idle) = idle {
                self.flows.remove(&idle);
            }
        }
        let stream = self.flows.entry(flow).or_default();
        stream.last_packet = n;
        let mut notes = Vec::new();
        let messages = stream.segment(seg, &mut notes, &mut self.stats);
        if seg.end {
            self.flows.remove(&flow);
        }
        for note in notes {
            self.problem(n, at, format!("TCP {} → {}: {note}", flow.src, flow.dst));
        }
        for m in messages {
            self.message(n, ts, flow, Transport::Tcp, &m);
        }
    }

    /// One SIP message (a datagram, or a message framed off a TCP stream).
    fn message(
        &mut self,
        n: u64,
        ts: Option<Timestamp>,
        flow: Flow,
        transport: Transport,
        data: &[u8],
    ) {
        let Ok(msg) = Message::parse(data) else {
            self.stats.not_sip += 1;
            return;
        };
        let via = msg.values(HeaderName::Via).next().unwrap_or("");
        let branch = via
            .split(';')
            .find_map(|p| p.trim().strip_prefix("branch="))
            .unwrap_or("");
        let call_id = msg.header(HeaderName::CallId).unwrap_or("");
        let cseq = msg.header(HeaderName::CSeq).unwrap_or("");
        let answer_key = format!("{call_id}\n{cseq}\n{branch}");
        let (method, uri) = match msg.start {
            StartLine::Request { method, uri, .. } => (method, uri),
            StartLine::Response { code, reason } => {
                // A final answer to an INVITE that waits for one.
                let invite = cseq
                    .split_whitespace()
                    .nth(1)
                    .is_some_and(|m| m.eq_ignore_ascii_case("INVITE"));
                if invite && code >= 200 && self.waiting.contains(&answer_key) {
                    let contact = (300..400)
                        .contains(&code)
                        .then(|| msg.values(HeaderName::Contact).next().and_then(user_host))
                        .flatten();
                    self.answers
                        .entry(answer_key)
                        .or_insert(OldAnswer::Response {
                            status: code,
                            reason: reason.to_owned(),
                            contact,
                        });
                }
                self.stats.other_sip += 1;
                return;
            }
        };
        if !method.eq_ignore_ascii_case("INVITE") {
            self.stats.other_sip += 1;
            return;
        }
        if self.to.is_some() && self.is_system(flow.src) && !self.is_system(flow.dst) {
            // The system sending a call on (a proxy): where to, for the call waiting for it.
            if self.waiting_calls.contains_key(call_id) {
                if let Some(target) = user_host(uri) {
                    self.forwarded
                        .insert(call_id.to_owned(), OldAnswer::Forwarded { target });
                }
            }
            self.stats.other_sip += 1;
            return;
        }
        let key = format!("{answer_key}\n{}", flow.src);
        let now = ts.map_or(0, Timestamp::as_second);
        while let Some((t, _)) = self.seen_order.front() {
            if now.saturating_sub(*t) <= DEDUPE_SECONDS {
                break;
            }
            if let Some((_, k)) = self.seen_order.pop_front() {
                self.seen.remove(&k);
            }
        }
        if !self.seen.insert(key.clone()) {
            self.stats.retransmissions += 1;
            return;
        }
        self.seen_order.push_back((now, key));
        self.stats.invites += 1;
        self.waiting.insert(answer_key.clone());
        *self.waiting_calls.entry(call_id.to_owned()).or_insert(0) += 1;
        self.ready.push_back((
            Invite {
                packet: n,
                at: ts,
                source: flow.src,
                destination: flow.dst,
                transport,
                text: String::from_utf8_lossy(data).into_owned(),
                old: None,
            },
            answer_key,
        ));
    }
}

/// The Call-ID of an answer key (`Call-ID \n CSeq \n branch`).
fn call_id_of(key: &str) -> &str {
    key.split('\n').next().unwrap_or("")
}

/// Why a block could not be read.
#[derive(Debug)]
enum Failure {
    Truncated,
    TooLarge,
    Corrupt(String),
}

impl Failure {
    /// What was found, as the block's own problem.
    fn what(&self) -> String {
        match self {
            Failure::Truncated => "its content runs past its end: a corrupt block".into(),
            Failure::TooLarge => format!("it claims more than {BUFFER} bytes: a corrupt block"),
            Failure::Corrupt(e) => format!("a corrupt block ({e})"),
        }
    }

    /// The problem when reading stops here.
    fn message(&self) -> String {
        match self {
            Failure::Truncated => {
                "the file ends inside this packet's record: the capture is truncated".into()
            }
            Failure::TooLarge => format!(
                "the record claims more than {BUFFER} bytes: a corrupt record header; the rest \
                 of the capture cannot be read"
            ),
            Failure::Corrupt(e) => {
                format!("a corrupt record ({e}); the rest of the capture cannot be read")
            }
        }
    }
}

/// What a TCP segment says.
#[derive(Debug)]
struct Segment<'a> {
    seq: u32,
    syn: bool,
    end: bool,
    payload: &'a [u8],
}

/// Where a SIP start line begins in `buf` (at its start or after a line end), for a stream cut
/// mid-message.
fn start_line(buf: &[u8]) -> Option<usize> {
    const STARTS: &[&[u8]] = &[
        b"INVITE ",
        b"ACK ",
        b"BYE ",
        b"CANCEL ",
        b"OPTIONS ",
        b"REGISTER ",
        b"PRACK ",
        b"UPDATE ",
        b"INFO ",
        b"NOTIFY ",
        b"SUBSCRIBE ",
        b"REFER ",
        b"MESSAGE ",
        b"SIP/2.0 ",
    ];
    (0..buf.len()).find(|&i| {
        (i == 0 || buf.get(i - 1) == Some(&b'\n'))
            && buf
                .get(i..)
                .is_some_and(|rest| STARTS.iter().any(|s| rest.starts_with(s)))
    })
}

impl Stream {
    /// Adds a segment; returns the messages now complete. `notes` gets what was lost.
    fn segment(
        &mut self,
        seg: &Segment<'_>,
        notes: &mut Vec<String>,
        stats: &mut Stats,
    ) -> Vec<Vec<u8>> {
        if seg.syn {
            *self = Stream {
                next_seq: Some(seg.seq.wrapping_add(1)),
                last_packet: self.last_packet,
                ..Stream::default()
            };
        }
        if seg.payload.is_empty() {
            return Vec::new();
        }
        let next_seq = match self.next_seq {
            Some(s) => s,
            None => {
                // The capture began mid-connection: start here, at the next start line.
                self.next_seq = Some(seg.seq);
                self.resync = true;
                seg.seq
            }
        };
        // Signed distance from the next byte expected (sequence numbers wrap at 2^32).
        let d = i64::from(seg.seq.wrapping_sub(next_seq) as i32);
        let abs = i64::try_from(self.next_abs)
            .unwrap_or(i64::MAX)
            .saturating_add(d);
        let abs = u64::try_from(abs).unwrap_or(0);
        self.accept(abs, seg.payload, stats);
        if self.pending_bytes > MAX_PENDING {
            // A segment never came: give the gap up, and go on from the first held segment.
            if let Some((&first, _)) = self.pending.iter().next() {
                notes.push(format!(
                    "{} bytes missing from the capture; the message in progress is dropped",
                    first.saturating_sub(self.next_abs)
                ));
                self.buf.clear();
                self.skip_to(first);
                self.resync = true;
            }
        }
        self.drain_pending(stats);
        self.frames(notes)
    }

    /// Puts bytes at stream offset `abs` in place: appended when they are next, held when they
    /// are ahead, trimmed (or dropped) where they were seen already.
    fn accept(&mut self, abs: u64, data: &[u8], stats: &mut Stats) {
        let end = abs.saturating_add(data.len() as u64);
        if end <= self.next_abs {
            stats.tcp_duplicates += 1;
            return;
        }
        if abs > self.next_abs {
            if !self.pending.contains_key(&abs) {
                self.pending_bytes += data.len();
                self.pending.insert(abs, data.to_vec());
            }
            return;
        }
        let skip = usize::try_from(self.next_abs - abs).unwrap_or(usize::MAX);
        if let Some(fresh) = data.get(skip..) {
            self.buf.extend_from_slice(fresh);
            self.advance(fresh.len());
        }
    }

    fn advance(&mut self, n: usize) {
        self.next_abs += n as u64;
        let n32 = u32::try_from(n % (1 << 32)).unwrap_or(0);
        self.next_seq = self.next_seq.map(|s| s.wrapping_add(n32));
    }

    fn skip_to(&mut self, abs: u64) {
        let n = usize::try_from(abs.saturating_sub(self.next_abs)).unwrap_or(0);
        self.advance(n);
    }

    fn drain_pending(&mut self, stats: &mut Stats) {
        while let Some((&abs, _)) = self.pending.iter().next() {
            if abs > self.next_abs {
                break;
            }
            if let Some(data) = self.pending.remove(&abs) {
                self.pending_bytes = self.pending_bytes.saturating_sub(data.len());
                self.accept(abs, &data, stats);
            }
        }
    }

    /// The whole messages at the front of the buffer, split as the live TCP reader splits them.
    fn frames(&mut self, notes: &mut Vec<String>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if self.resync {
            match start_line(&self.buf) {
                Some(i) => {
                    self.buf.drain(..i);
                    self.resync = false;
                }
                None => {
                    // Keep a line's worth in case a start line is split across segments.
                    let keep = self.buf.len().saturating_sub(16);
                    self.buf.drain(..keep);
                    return out;
                }
            }
        }
        let mut bad = None;
        let open = tollgate_sip::message::drain_frames(&mut self.buf, |f| match f {
            Framed::Message(m) => out.push(m.to_vec()),
            // The live reader answers 400 and closes: no call.
            Framed::MissingLength(_) => bad = Some("a message without Content-Length"),
            Framed::Invalid(_, why) => bad = Some(why),
        });
        if open.is_none() {
            notes.push(format!(
                "the stream cannot be split into SIP messages here ({}); skipped to the next \
                 start line",
                bad.unwrap_or("invalid framing")
            ));
            self.buf.clear();
            self.resync = true;
        } else if self.buf.len() > 2 * MAX_MESSAGE {
            notes.push(format!(
                "more than {} bytes without a whole message; skipped to the next start line",
                2 * MAX_MESSAGE
            ));
            self.buf.clear();
            self.resync = true;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn invite(call: &str) -> Vec<u8> {
        format!(
            "INVITE sip:+18005550100@x SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bK{call}\r\n\
             From: <sip:+12125550100@x>;tag=1\r\nTo: <sip:+18005550100@x>\r\nCall-ID: {call}\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 4\r\n\r\nv=0\n"
        )
        .into_bytes()
    }

    fn seg(seq: u32, payload: &[u8]) -> Segment<'_> {
        Segment {
            seq,
            syn: false,
            end: false,
            payload,
        }
    }

    #[test]
    fn tcp_reassembles_out_of_order_and_retransmitted_segments() {
        let mut s = Stream::default();
        let mut notes = Vec::new();
        let mut stats = Stats::default();
        let a = invite("a");
        let b = invite("b");
        let mut all = a.clone();
        all.extend_from_slice(&b);
        let syn = Segment {
            seq: u32::MAX - 10,
            syn: true,
            end: false,
            payload: &[],
        };
        assert!(s.segment(&syn, &mut notes, &mut stats).is_empty());
        let base = (u32::MAX - 10).wrapping_add(1);
        let at = |o: usize| base.wrapping_add(o as u32);
        // The second half first, then the first, then the first again (a retransmission),
        // then an overlapping segment.
        let half = all.len() / 2;
        assert!(s
            .segment(&seg(at(half), &all[half..]), &mut notes, &mut stats)
            .is_empty());
        let got = s.segment(&seg(at(0), &all[..half]), &mut notes, &mut stats);
        assert_eq!(got, vec![a.clone(), b.clone()]);
        assert!(s
            .segment(&seg(at(0), &all[..half]), &mut notes, &mut stats)
            .is_empty());
        assert_eq!(stats.tcp_duplicates, 1);
        let c = invite("c");
        let mut overlap = all[all.len() - 5..].to_vec();
        overlap.extend_from_slice(&c);
        let got = s.segment(&seg(at(all.len() - 5), &overlap), &mut notes, &mut stats);
        assert_eq!(got, vec![c]);
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn a_gap_is_given_up_and_the_stream_resynchronises() {
        let mut s = Stream::default();
        let mut notes = Vec::new();
        let mut stats = Stats::default();
        let a = invite("a");
        // Mid-connection: the capture starts inside a message.
        let got = s.segment(&seg(1000, &a[10..]), &mut notes, &mut stats);
        assert!(got.is_empty());
        let b = invite("b");
        let got = s.segment(&seg(1000 + a.len() as u32 - 10, &b), &mut notes, &mut stats);
        assert_eq!(got, vec![b.clone()]);
        // A lost segment, then more than MAX_PENDING behind it.
        let start = 1000 + (a.len() - 10 + b.len()) as u32 + 100;
        let mut sent = 0usize;
        let mut calls = Vec::new();
        while sent <= MAX_PENDING {
            let m = invite(&format!("n{sent}"));
            calls.push(m.clone());
            let out = s.segment(&seg(start + sent as u32, &m), &mut notes, &mut stats);
            sent += m.len();
            if !out.is_empty() {
                assert!(out.len() >= calls.len() - 1, "held calls come out");
                break;
            }
        }
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("100 bytes missing"), "{notes:?}");
    }

    /// A pcap of INVITEs over UDP and TCP (Ethernet, IPv4), built with etherparse.
    fn capture() -> Vec<u8> {
        let mut out = Vec::new();
        for v in [
            0xa1b2_c3d4u32.to_le_bytes().as_slice(),
            &2u16.to_le_bytes(),
            &4u16.to_le_bytes(),
        ] {
            out.extend_from_slice(v);
        }
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&65_535u32.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        let mut seq = 1000u32;
        for (i, call) in ["u1", "t1", "u2", "t2", "u1"].iter().enumerate() {
            let payload = invite(call);
            let b = etherparse::PacketBuilder::ethernet2([0; 6], [0; 6]).ipv4(
                [127, 0, 0, 1],
                [127, 0, 0, 2],
                64,
            );
            let mut pkt = Vec::new();
            if call.starts_with('u') {
                b.udp(5070, 5060).write(&mut pkt, &payload).unwrap();
            } else {
                b.tcp(5071, 5060, seq, 1024)
                    .write(&mut pkt, &payload)
                    .unwrap();
                seq = seq.wrapping_add(payload.len() as u32);
            }
            out.extend_from_slice(&(1_800_000_000u32 + i as u32).to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
            out.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
            out.extend_from_slice(&pkt);
        }
        out
    }

    fn read_all(bytes: Vec<u8>) -> Option<(Vec<Invite>, CaptureReader)> {
        let mut r = CaptureReader::from_reader("test", std::io::Cursor::new(bytes), None).ok()?;
        let mut got = Vec::new();
        while let Some(i) = r.next_invite() {
            got.push(i);
        }
        Some((got, r))
    }

    #[test]
    fn udp_and_tcp_invites_come_out_once_each() {
        let (got, r) = read_all(capture()).unwrap();
        let ids: Vec<(u64, Transport)> = got.iter().map(|i| (i.packet, i.transport)).collect();
        assert_eq!(
            ids,
            vec![
                (1, Transport::Udp),
                (2, Transport::Tcp),
                (3, Transport::Udp),
                (4, Transport::Tcp)
            ]
        );
        assert_eq!(
            r.stats.retransmissions, 1,
            "the last packet repeats the first INVITE"
        );
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(got[0].at.map(|t| t.as_second()), Some(1_800_000_000));
        assert_eq!(got[0].source, "127.0.0.1:5070".parse().unwrap());
    }

    /// A pcap of UDP datagrams (source, destination, payload), a second apart.
    fn udp_capture(packets: &[(&str, &str, String)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&65_535u32.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        for (i, (src, dst, payload)) in packets.iter().enumerate() {
            let (src, dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
            let ip = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v) => v.octets(),
                IpAddr::V6(_) => unreachable!(),
            };
            let mut pkt = Vec::new();
            etherparse::PacketBuilder::ethernet2([0; 6], [0; 6])
                .ipv4(ip(src), ip(dst), 64)
                .udp(src.port(), dst.port())
                .write(&mut pkt, payload.as_bytes())
                .unwrap();
            out.extend_from_slice(&(1_800_000_000u32 + i as u32).to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
            out.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
            out.extend_from_slice(&pkt);
        }
        out
    }

    fn request(method: &str, uri: &str, call: &str, branch: &str) -> String {
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch={branch}\r\n\
             From: <sip:+12125550100@x>;tag=1\r\nTo: <sip:+18005550100@x>\r\nCall-ID: {call}\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    }

    fn response(status: &str, call: &str, branch: &str, contact: &str) -> String {
        format!(
            "SIP/2.0 {status}\r\nVia: SIP/2.0/UDP 10.0.0.1;branch={branch}\r\n\
             From: <sip:+12125550100@x>;tag=1\r\nTo: <sip:+18005550100@x>;tag=2\r\n\
             Call-ID: {call}\r\nCSeq: 1 INVITE\r\n{contact}Content-Length: 0\r\n\r\n"
        )
    }

    /// What the system in front of which the capture was taken did: its final response (a
    /// 302's Contact, a rejection), or the INVITE it sent on; only packets to and from `--to`.
    #[test]
    fn each_invite_carries_the_captured_answer() {
        let (carrier, system, acd) = ("10.0.0.1:5060", "10.0.0.5:5060", "10.0.0.9:5060");
        let ruri = "sip:+18005550100@10.0.0.5";
        let bytes = udp_capture(&[
            (carrier, system, request("INVITE", ruri, "r1", "z9hG4bKr1")),
            (carrier, system, request("INVITE", ruri, "p1", "z9hG4bKp1")),
            (carrier, system, request("INVITE", ruri, "n1", "z9hG4bKn1")),
            (carrier, system, request("INVITE", ruri, "x1", "z9hG4bKx1")),
            (
                system,
                carrier,
                response("100 Trying", "r1", "z9hG4bKr1", ""),
            ),
            (
                system,
                carrier,
                response(
                    "302 Moved Temporarily",
                    "r1",
                    "z9hG4bKr1",
                    "Contact: <sip:sales@acd.example.net;ref=1>\r\n",
                ),
            ),
            (
                system,
                acd,
                request("INVITE", "sip:+18005550100@10.0.0.8", "p1", "z9hG4bKfw"),
            ),
            // The first hop redirected; the proxy followed it: the last place is what it did.
            (
                system,
                acd,
                request(
                    "INVITE",
                    "sip:support@acd.example.net;lr",
                    "p1",
                    "z9hG4bKf2",
                ),
            ),
            (system, carrier, response("200 OK", "p1", "z9hG4bKp1", "")),
            (
                system,
                carrier,
                response("603 Decline", "n1", "z9hG4bKn1", ""),
            ),
            // Traffic elsewhere: not counted, not an answer.
            (
                acd,
                "10.0.0.7:5060",
                request("INVITE", ruri, "y1", "z9hG4bKy1"),
            ),
        ]);
        let to = Some("10.0.0.5:5060".parse().unwrap());
        let mut r = CaptureReader::from_reader("t", std::io::Cursor::new(bytes), to).unwrap();
        let mut got = Vec::new();
        while let Some(i) = r.next_invite() {
            got.push((i.packet, i.old));
        }
        assert_eq!(
            got,
            vec![
                (
                    1,
                    Some(OldAnswer::Response {
                        status: 302,
                        reason: "Moved Temporarily".into(),
                        contact: Some("sales@acd.example.net".into())
                    })
                ),
                (
                    2,
                    Some(OldAnswer::Forwarded {
                        target: "support@acd.example.net".into()
                    })
                ),
                (
                    3,
                    Some(OldAnswer::Response {
                        status: 603,
                        reason: "Decline".into(),
                        contact: None
                    })
                ),
                (4, None),
            ]
        );
        assert_eq!(r.stats.filtered, 1);
        let route = tollgate_core::Decision {
            action: tollgate_core::DecisionAction::Route(tollgate_core::Target::new(
                "SALES",
                "acd.example.net",
            )),
            rule: Default::default(),
            version: Default::default(),
        };
        assert!(got[0].1.as_ref().unwrap().same_as(&route));
        assert!(!got[1].1.as_ref().unwrap().same_as(&route));
        assert_eq!(
            got[0].1.as_ref().unwrap().describe(),
            "302 → sales@acd.example.net"
        );
    }

    /// Network input never panics: the capture cut at every fifth length, and every fifth byte
    /// (every header byte of the file and of the first record) changed.
    #[test]
    fn no_damage_to_a_capture_panics() {
        let good = capture();
        for len in (0..good.len()).step_by(5) {
            let _ = read_all(good[..len].to_vec());
        }
        let headers = 24 + 16 + 14 + 20 + 20;
        let positions = (0..headers).chain((headers..good.len()).step_by(5));
        for at in positions {
            for v in [0x00, 0xff] {
                let mut bad = good.clone();
                bad[at] = v;
                if let Some((got, r)) = read_all(bad) {
                    assert!(got.len() <= 5);
                    assert!(r.problems.len() <= 10, "{:?}", r.problems);
                }
            }
        }
    }

    #[test]
    fn a_destination_is_an_address_or_an_address_and_port() {
        assert_eq!(
            "127.0.0.1:5060".parse::<Destination>().unwrap(),
            Destination {
                ip: "127.0.0.1".parse().unwrap(),
                port: Some(5060)
            }
        );
        assert_eq!(
            "::1".parse::<Destination>().unwrap().port,
            None,
            "a bare IPv6 address"
        );
        assert!("nowhere".parse::<Destination>().is_err());
    }
}
