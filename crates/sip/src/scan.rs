//! Byte searches shared by the parsers: every header line and URI is searched for its
//! separators, so these run dozens of times per INVITE. Sixteen-byte blocks the compiler
//! compares as one vector for header lines and values, words of eight bytes for short strings;
//! and the UTF-8 check of the whole datagram.

const LO: u64 = 0x0101_0101_0101_0101;
pub(crate) const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `w` equal to the byte repeated in `pattern`; the lowest flag is
/// exact (a borrow can only flag bytes above a real match).
#[inline(always)]
fn eq_bytes(w: u64, pattern: u64) -> u64 {
    let x = w ^ pattern;
    x.wrapping_sub(LO) & !x & HI
}

/// Sixteen bytes from `b[i..]` as two little-endian words.
#[inline(always)]
fn words16_at(b: &[u8], i: usize) -> Option<(u64, u64)> {
    match b.get(i..i + 16) {
        Some(&[b0, b1, b2, b3, b4, b5, b6, b7, c0, c1, c2, c3, c4, c5, c6, c7]) => Some((
            u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]),
            u64::from_le_bytes([c0, c1, c2, c3, c4, c5, c6, c7]),
        )),
        _ => None,
    }
}

/// The index of the first flagged byte of `(low, high)`, sixteen bytes read as one.
#[inline(always)]
fn first_flag(low: u64, high: u64) -> usize {
    if low != 0 {
        (low.trailing_zeros() / 8) as usize
    } else {
        8 + (high.trailing_zeros() / 8) as usize
    }
}

/// The first `needle` at or after `from`, sixteen bytes at a time: for header lines. Each block
/// is tested with a fold the compiler turns into one vector compare of all sixteen bytes, and
/// only the block that holds the needle is searched for where.
#[inline(always)]
pub(crate) fn find_from(hay: &[u8], from: usize, needle: u8) -> Option<usize> {
    let (blocks, tail) = hay.get(from..)?.as_chunks::<16>();
    for (j, b) in blocks.iter().enumerate() {
        // `in_block`'s test, written out: called here it changed the header walk's code
        // (+100 instructions per INVITE), so the line-end search keeps its own copy.
        if b.iter().fold(false, |any, &c| any | (c == needle)) {
            // Where in the block, with word arithmetic: taking the vector compare's result
            // apart went through memory, slower than these few instructions.
            let [b0, b1, b2, b3, b4, b5, b6, b7, c0, c1, c2, c3, c4, c5, c6, c7] = *b;
            let p = LO * u64::from(needle);
            let low = eq_bytes(u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]), p);
            let high = eq_bytes(u64::from_le_bytes([c0, c1, c2, c3, c4, c5, c6, c7]), p);
            return Some(from + 16 * j + first_flag(low, high));
        }
    }
    let base = from + 16 * blocks.len();
    tail.iter().position(|&c| c == needle).map(|k| base + k)
}

/// [`find_from`] for values of tens of bytes (a list value, a name-addr's URI), whose last
/// bytes would be most of the search in its byte loop: past the sixteen-byte blocks, the last
/// sixteen bytes are tested as one more block (overlapping blocks already found clear), and a
/// value shorter than a block as two overlapping words.
#[inline(always)]
pub(crate) fn find_in_value(hay: &[u8], needle: u8) -> Option<usize> {
    let (blocks, tail) = hay.as_chunks::<16>();
    for (j, b) in blocks.iter().enumerate() {
        if let Some(k) = in_block(b, needle) {
            return Some(16 * j + k);
        }
    }
    if tail.is_empty() {
        return None;
    }
    if let (false, Some(last)) = (blocks.is_empty(), hay.last_chunk::<16>()) {
        return in_block(last, needle).map(|k| hay.len() - 16 + k);
    }
    let p = LO * u64::from(needle);
    match (tail.first_chunk::<8>(), tail.last_chunk::<8>()) {
        (Some(head), Some(end)) => {
            let hit = eq_bytes(u64::from_le_bytes(*head), p);
            if hit != 0 {
                return Some((hit.trailing_zeros() / 8) as usize);
            }
            let hit = eq_bytes(u64::from_le_bytes(*end), p);
            (hit != 0).then(|| tail.len() - 8 + (hit.trailing_zeros() / 8) as usize)
        }
        _ => tail.iter().position(|&c| c == needle),
    }
}

/// Where `needle` first is in a block of sixteen bytes.
#[inline(always)]
fn in_block(b: &[u8; 16], needle: u8) -> Option<usize> {
    if !b.iter().fold(false, |any, &c| any | (c == needle)) {
        return None;
    }
    // Where in the block, with word arithmetic: taking the vector compare's result apart went
    // through memory, slower than these few instructions.
    let [b0, b1, b2, b3, b4, b5, b6, b7, c0, c1, c2, c3, c4, c5, c6, c7] = *b;
    let p = LO * u64::from(needle);
    let low = eq_bytes(u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]), p);
    let high = eq_bytes(u64::from_le_bytes([c0, c1, c2, c3, c4, c5, c6, c7]), p);
    Some(first_flag(low, high))
}

/// The first `needle` in `hay`, eight bytes at a time: for the short strings of URIs and
/// parameters, where [`find_from`]'s sixteen-byte steps leave most bytes to its byte loop.
#[inline]
pub(crate) fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    let p = LO * u64::from(needle);
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let &[b0, b1, b2, b3, b4, b5, b6, b7] = chunk else {
            break;
        };
        let hit = eq_bytes(u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]), p);
        if hit != 0 {
            return Some(base + (hit.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|i| base + i)
}

/// The first byte at or after `from` that is `a` or `b`, sixteen bytes at a time. Inlined into
/// a caller that is not inlined itself and passes constants: on its own the loop keeps its
/// constants in registers, where inlined into the parser it spilled them.
#[inline(always)]
pub(crate) fn find_either(hay: &[u8], from: usize, a: u8, b: u8) -> Option<usize> {
    let (pa, pb) = (LO * u64::from(a), LO * u64::from(b));
    let mut i = from;
    while let Some((w0, w1)) = words16_at(hay, i) {
        let h0 = eq_bytes(w0, pa) | eq_bytes(w0, pb);
        let h1 = eq_bytes(w1, pa) | eq_bytes(w1, pb);
        if h0 | h1 != 0 {
            return Some(i + first_flag(h0, h1));
        }
        i += 16;
    }
    let tail = hay.get(i..)?;
    tail.iter().position(|&c| c == a || c == b).map(|k| i + k)
}

/// `b.iter().any(is_lws)` (space, tab, CR or LF), eight bytes at a time: a word with no byte
/// below 0x21 holds none of them, and only a word that has one is looked at byte by byte.
#[inline]
pub(crate) fn any_lws(b: &[u8]) -> bool {
    let is_lws = crate::hdr::is_lws;
    let (words, tail) = b.as_chunks::<8>();
    words.iter().any(|w| {
        let x = u64::from_le_bytes(*w);
        // High bit set in some byte exactly when a byte is below 0x21 (a borrow can only carry
        // from such a byte), so a clear result rules the word out.
        x.wrapping_sub(LO * 0x21) & !x & HI != 0 && w.iter().any(|&c| is_lws(c))
    }) || tail.iter().any(|&c| is_lws(c))
}

/// The longest valid UTF-8 prefix of `b`, and whether it is all of `b`. The datagram is checked
/// whole on every message: simdutf8 checks it 32 or 64 bytes a step (about 2.4x faster than
/// `str::from_utf8` on the bench INVITE), and only invalid input pays for std's error position.
pub(crate) fn utf8_prefix(b: &[u8]) -> (&str, bool) {
    if let Ok(text) = simdutf8::basic::from_utf8(b) {
        return (text, true);
    }
    match std::str::from_utf8(b) {
        Ok(text) => (text, true),
        Err(e) => (
            std::str::from_utf8(b.get(..e.valid_up_to()).unwrap_or_default()).unwrap_or_default(),
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `utf8_prefix` against std: valid text, and every byte value at each position of an
    /// ASCII run long enough for simdutf8's vector path.
    #[test]
    fn utf8_prefix_agrees_with_std() {
        let std_prefix = |b: &[u8]| match std::str::from_utf8(b) {
            Ok(t) => (t.to_owned(), true),
            Err(e) => (
                String::from_utf8_lossy(b.get(..e.valid_up_to()).unwrap_or_default()).into_owned(),
                false,
            ),
        };
        let mut inputs: Vec<Vec<u8>> = vec![Vec::new(), "é€😀".repeat(40).into_bytes()];
        for len in [1, 15, 31, 63, 64, 65, 130] {
            for at in [0, len / 2, len - 1] {
                for c in [0x41, 0x7f, 0x80, 0xbf, 0xc3, 0xe2, 0xf0, 0xff] {
                    let mut b = vec![b'a'; len];
                    if let Some(x) = b.get_mut(at) {
                        *x = c;
                    }
                    inputs.push(b);
                }
            }
        }
        for b in &inputs {
            let (text, whole) = utf8_prefix(b);
            assert_eq!((text.to_owned(), whole), std_prefix(b), "{b:?}");
        }
    }

    /// `any_lws` against a plain test: each byte value at every offset of short strings.
    #[test]
    fn any_lws_agrees_with_a_plain_test() {
        let plain = |b: &[u8]| b.iter().any(|&c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'));
        for len in 0..20 {
            for at in 0..len {
                for c in 0..=255u8 {
                    let mut b = vec![b'a'; len];
                    if let Some(x) = b.get_mut(at) {
                        *x = c;
                    }
                    assert_eq!(any_lws(&b), plain(&b), "{b:?}");
                }
            }
        }
    }

    /// Every position, every length around the word boundaries, against a plain search.
    #[test]
    fn searches_agree_with_a_plain_scan() {
        for len in 0..40 {
            for at in 0..=len {
                let mut hay = vec![b'a'; len];
                if let Some(c) = hay.get_mut(at) {
                    *c = b';';
                }
                // A byte one above the needle must not match (the borrow case).
                if let Some(c) = hay.get_mut(at.saturating_sub(1)) {
                    if at > 0 {
                        *c = b';' + 1;
                    }
                }
                let plain = hay.iter().position(|&c| c == b';');
                assert_eq!(find_byte(&hay, b';'), plain, "len {len} at {at}");
                for from in 0..=len {
                    let want = hay
                        .iter()
                        .skip(from)
                        .position(|&c| c == b';')
                        .map(|k| k + from);
                    assert_eq!(find_from(&hay, from, b';'), want);
                    if from == 0 {
                        assert_eq!(find_in_value(&hay, b';'), want, "len {len} at {at}");
                        // A second needle later on never hides the first.
                        let mut two = hay.clone();
                        if let Some(c) = two.get_mut(len.saturating_sub(1)) {
                            *c = b';';
                        }
                        let first = two.iter().position(|&c| c == b';');
                        assert_eq!(find_in_value(&two, b';'), first, "len {len} at {at}");
                    }
                    let either = hay
                        .iter()
                        .skip(from)
                        .position(|&c| c == b';' || c == b'<')
                        .map(|k| k + from);
                    assert_eq!(find_either(&hay, from, b';', b'<'), either);
                }
            }
        }
    }
}
