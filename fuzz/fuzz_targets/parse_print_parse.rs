//! `Message::write_to` must print what `Message::parse` read: parsing the printed message
//! again gives the same start line, the same headers (raw name, kind, and value unfolded onto
//! one line) and the same body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_sip::message::{unfold, Garbage, Message, MAX_MESSAGE};

fuzz_target!(|data: &[u8]| {
    let Ok(first) = Message::parse(data) else {
        return;
    };
    let mut out = Vec::with_capacity(data.len() + 64);
    first.write_to(&mut out);
    let second = match Message::parse(&out) {
        Ok(m) => m,
        // Printing normalizes `name:value` to `name: value` and always writes the empty line,
        // so a message near the size limit may print longer than the limit.
        Err(Garbage::TooLarge) if out.len() > MAX_MESSAGE => return,
        Err(e) => panic!(
            "printed message does not parse: {e}\nprinted: {:?}",
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!(second.start, first.start, "start line differs");
    fn names<'a>(m: &Message<'a>) -> Vec<&'a str> {
        m.headers.iter().map(|h| h.raw_name).collect()
    }
    assert_eq!(
        names(&second),
        names(&first),
        "header names differ\nprinted: {:?}",
        String::from_utf8_lossy(&out)
    );
    for (a, b) in first.headers.iter().zip(&second.headers) {
        assert_eq!(b.name, a.name, "header kind differs for {:?}", a.raw_name);
        assert_eq!(
            b.value,
            unfold(a.value),
            "value of {:?} differs\nprinted: {:?}",
            a.raw_name,
            String::from_utf8_lossy(&out)
        );
    }
    assert_eq!(second.body, first.body, "body differs");
});
