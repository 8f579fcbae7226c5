//! Sample messages shared by Tollgate's benchmarks (`benches/*.rs`) and the sipp comparison.
//!
//! [`CARRIER_INVITE`] is a realistic carrier INVITE (about 970 bytes) carrying every identity
//! header the extractor reads; [`CALLS`] and [`sipp_invite`] rebuild the INVITEs that
//! `benches/sipp/peer/sipp/invite_302.xml` sends, so the in-process numbers and the sipp run
//! measure the same calls.

/// An INVITE from a trusted carrier trunk: PAI as tel and sip, RPID, P-Charge-Info, Diversion,
/// Privacy and an SDP offer.
pub const CARRIER_INVITE: &str = "INVITE sip:+18005550100@tollgate.example;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 69\r\n\
From: \"ACME Corp\" <sip:+12125551212@carrier.example;user=phone>;tag=1928301774\r\n\
To: <sip:+18005550100@tollgate.example;user=phone>\r\n\
Call-ID: a84b4c76e66710@carrier.example\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:+12125551212@198.51.100.10:5060>\r\n\
P-Asserted-Identity: <tel:+12125551212;cpc=ordinary;oli=00>\r\n\
P-Asserted-Identity: <sip:+12125551212@carrier.example;user=phone>\r\n\
Remote-Party-ID: <sip:+12125551212@carrier.example;user=phone>;party=calling;screen=yes\r\n\
P-Charge-Info: <sip:+12125550000@carrier.example;user=phone>\r\n\
Diversion: <sip:+18885550101@carrier.example;user=phone>;reason=unconditional\r\n\
Privacy: none\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 163\r\n\
\r\n\
v=0\r\n\
o=- 5365 2353 IN IP4 198.51.100.10\r\n\
s=-\r\n\
c=IN IP4 198.51.100.20\r\n\
t=0 0\r\n\
m=audio 16384 RTP/AVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n";

/// One row of sipp's injection file: `field0;field1;field2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallRow {
    /// Network ANI, sent as `P-Asserted-Identity: <sip:+ANI@...>` (field0).
    pub ani: &'static str,
    /// Dialed toll-free number, sent in the Request-URI and To (field1).
    pub dnis: &'static str,
    /// Presented number, sent in From (field2).
    pub presented: &'static str,
}

const fn row(ani: &'static str, dnis: &'static str, presented: &'static str) -> CallRow {
    CallRow {
        ani,
        dnis,
        presented,
    }
}

/// The first 20 rows of `benches/sipp/peer/sipp/calls.csv` (the file the sipp comparison replays):
/// six countries, five DNIS (one not in the routing table), German callers among them.
pub const CALLS: [CallRow; 20] = [
    row("442072601815", "18005550100", "2601815"),
    row("919830166131", "18665550103", "0166131"),
    row("12125559139", "18005550100", "5559139"),
    row("551196030824", "18665550103", "6030824"),
    row("13125558194", "18885550101", "5558194"),
    row("14155559935", "18005550100", "5559935"),
    row("919819093786", "18775550102", "9093786"),
    row("331497543231", "18775550102", "7543231"),
    row("919875749118", "18665550103", "5749118"),
    row("13125555276", "18005550100", "5555276"),
    row("14155558955", "18775550102", "5558955"),
    row("551179711471", "18005550100", "9711471"),
    row("498997465075", "18885550101", "7465075"),
    row("551117034236", "18665550103", "7034236"),
    row("331412768426", "18775550102", "2768426"),
    row("447700563212", "18885550101", "0563212"),
    row("493030792440", "18885550101", "0792440"),
    row("447700859952", "18005550100", "0859952"),
    row("331486666176", "18005550100", "6666176"),
    row("493013721590", "18005550100", "3721590"),
];

/// The INVITE that `invite_302.xml` sends for `call`, as sipp fills it in for call number `n`
/// from 127.0.0.1:5061 to 127.0.0.1:5080.
pub fn sipp_invite(call: &CallRow, n: usize) -> String {
    let body = "v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";
    let CallRow {
        ani,
        dnis,
        presented,
    } = call;
    format!(
        "INVITE sip:{dnis}@127.0.0.1:5080;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4242-{n}-0\r\n\
From: \"Main Office\" <sip:{presented}@carrier.example.net;user=phone>;tag=4242SIPpTag00{n}\r\n\
To: <sip:{dnis}@127.0.0.1:5080;user=phone>\r\n\
Call-ID: {n}-4242@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:trunk@127.0.0.1:5061>\r\n\
Max-Forwards: 70\r\n\
P-Asserted-Identity: <sip:+{ani}@carrier.example.net;user=phone>\r\n\
Subject: Performance Test\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\
\r\n\
{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content_length_matches(msg: &str) -> bool {
        let (head, body) = msg.split_once("\r\n\r\n").expect("end of headers");
        let declared = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse::<usize>().ok());
        declared == Some(body.len())
    }

    #[test]
    fn samples_are_well_formed() {
        assert!(content_length_matches(CARRIER_INVITE));
        assert!((850..1100).contains(&CARRIER_INVITE.len()));
        for (n, call) in CALLS.iter().enumerate() {
            assert!(content_length_matches(&sipp_invite(call, n)));
        }
    }
}
