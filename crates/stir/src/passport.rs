//! SHAKEN PASSporT decoding (RFC 8225, RFC 8588) and the ES256 signature check.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde_json::{Map, Value};
use tollgate_core::Attestation;

use crate::error::StirError;

/// base64url with or without padding: RFC 7515 says unpadded, some signers pad anyway.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// Plain base64, for tokens written to the letter of RFC 8224's `base64-char` (`+`, `/`).
const B64STD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes one JWS segment, base64url or (when it uses `+` or `/`) plain base64.
pub(crate) fn b64_decode(segment: &str, what: &str) -> Result<Vec<u8>, StirError> {
    let engine = if segment.contains(['+', '/']) {
        &B64STD
    } else {
        &B64URL
    };
    engine
        .decode(segment)
        .map_err(|e| StirError::Malformed(format!("{what} is not base64url: {e}")))
}

/// The three segments of a compact JWS, borrowed from the token.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segments<'a> {
    pub header: &'a str,
    pub payload: &'a str,
    pub signature: &'a str,
    /// `b64u(hdr) "." b64u(payload)`: the bytes the signature covers, exactly as received.
    pub signing_input: &'a str,
}

pub(crate) fn split_token(token: &str) -> Result<Segments<'_>, StirError> {
    let malformed = || StirError::Malformed("PASSporT is not hdr.payload.sig".into());
    let last_dot = token.rfind('.').ok_or_else(malformed)?;
    let (signing_input, dot_sig) = token.split_at(last_dot);
    let signature = dot_sig.get(1..).ok_or_else(malformed)?;
    let (header, payload) = signing_input.split_once('.').ok_or_else(malformed)?;
    if payload.contains('.') {
        return Err(malformed());
    }
    if header.is_empty() || signature.is_empty() {
        return Err(malformed());
    }
    if payload.is_empty() {
        // RFC 8224's compact form rebuilds the payload from SIP headers; SHAKEN never uses it.
        return Err(StirError::Malformed(
            "compact-form PASSporT (empty payload) is not used in SHAKEN".into(),
        ));
    }
    Ok(Segments {
        header,
        payload,
        signature,
        signing_input,
    })
}

/// The JOSE header of a PASSporT (RFC 8225 §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassportHeader {
    pub alg: Option<String>,
    pub typ: Option<String>,
    pub ppt: Option<String>,
    pub x5u: Option<String>,
}

impl PassportHeader {
    /// Decodes the base64url header segment. Only structure is checked here; whether `typ`,
    /// `alg` and `ppt` have acceptable values is the verifier's business (it classifies them).
    pub fn decode(segment: &str) -> Result<Self, StirError> {
        let obj = json_object(segment, "PASSporT header")?;
        Ok(PassportHeader {
            alg: opt_string(&obj, "alg", "header")?,
            typ: opt_string(&obj, "typ", "header")?,
            ppt: opt_string(&obj, "ppt", "header")?,
            x5u: opt_string(&obj, "x5u", "header")?,
        })
    }
}

/// SHAKEN PASSporT claims (RFC 8225 §5, RFC 8588 §4-5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub attest: Attestation,
    /// `dest.tn`: the called numbers, as signed.
    pub dest_tn: Vec<String>,
    /// `dest.uri`, when the signer used URIs as well.
    pub dest_uri: Vec<String>,
    /// `iat`, a NumericDate in seconds.
    pub iat: i64,
    /// `orig.tn`: the calling number, as signed.
    pub orig_tn: String,
    /// `origid`: the signer's opaque UUID for tracing (RFC 8588 §5); never compared.
    pub origid: Option<String>,
}

impl Claims {
    /// Decodes and type-checks the payload segment (RFC 8225 §5, RFC 8588 §4: `iat` an
    /// integer, `attest` A, B or C, `dest.tn` an array). Every failure is a 438
    /// [`StirError::BadClaim`] (or `Malformed` when it is not JSON at all).
    pub fn decode(segment: &str) -> Result<Self, StirError> {
        let obj = json_object(segment, "PASSporT payload")?;
        let bad = |m: String| StirError::BadClaim(m);

        let attest = match obj.get("attest") {
            Some(Value::String(s)) => match s.as_str() {
                "A" => Attestation::A,
                "B" => Attestation::B,
                "C" => Attestation::C,
                other => return Err(bad(format!("attest {other:?} is not A, B or C"))),
            },
            Some(v) => return Err(bad(format!("attest is not a string: {v}"))),
            None => return Err(bad("attest is missing".into())),
        };

        let iat = match obj.get("iat") {
            Some(Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| bad(format!("iat {n} is not an integer NumericDate")))?,
            // RFC 8225 §7.1 and RFC 8588 §6 print a string iat (errata 5985, 6656); the
            // NumericDate of §5.1.1 is a JSON number, and accepting both would let one token
            // be read two ways. Say clearly why it failed.
            Some(Value::String(s)) => {
                return Err(bad(format!(
                    "iat is the string {s:?}; a NumericDate is a JSON integer (RFC 8225 §5.1.1, erratum 5985)"
                )))
            }
            Some(v) => return Err(bad(format!("iat is not an integer: {v}"))),
            None => return Err(bad("iat is missing".into())),
        };

        let orig_tn = match obj.get("orig") {
            Some(Value::Object(o)) => match o.get("tn") {
                Some(Value::String(tn)) => tn.clone(),
                Some(v) => return Err(bad(format!("orig.tn is not a string: {v}"))),
                None => return Err(bad("orig has no tn (SHAKEN signs telephone numbers)".into())),
            },
            Some(Value::String(s)) => {
                return Err(bad(format!(
                    "orig is the string {s:?}, not an object {{\"tn\":...}} (RFC 8225 §5.2.1)"
                )))
            }
            Some(v) => return Err(bad(format!("orig is not an object: {v}"))),
            None => return Err(bad("orig is missing".into())),
        };

        let (dest_tn, dest_uri) = match obj.get("dest") {
            Some(Value::Object(d)) => (
                string_array(d.get("tn"), "dest.tn")?,
                string_array(d.get("uri"), "dest.uri")?,
            ),
            Some(Value::String(s)) => {
                return Err(bad(format!(
                    "dest is the string {s:?}, not an object {{\"tn\":[...]}} (RFC 8225 §5.2.1)"
                )))
            }
            Some(v) => return Err(bad(format!("dest is not an object: {v}"))),
            None => return Err(bad("dest is missing".into())),
        };
        if dest_tn.is_empty() && dest_uri.is_empty() {
            return Err(bad("dest has neither tn nor uri".into()));
        }

        let origid = match obj.get("origid") {
            Some(Value::String(s)) => Some(s.clone()),
            None => None,
            Some(v) => return Err(bad(format!("origid is not a string: {v}"))),
        };

        Ok(Claims {
            attest,
            dest_tn,
            dest_uri,
            iat,
            orig_tn,
            origid,
        })
    }
}

/// A decoded, not yet verified, PASSporT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passport {
    pub header: PassportHeader,
    pub claims: Claims,
    /// The raw 64-byte R‖S signature (or whatever length was sent; the check rejects others).
    pub signature: Vec<u8>,
    /// `b64u(hdr) "." b64u(payload)` as received.
    pub signing_input: String,
}

impl Passport {
    /// Decodes a compact JWS `hdr.payload.sig` without checking header values or the
    /// signature: useful to read claims for logging; use [`crate::Verifier`] to trust them.
    pub fn decode(token: &str) -> Result<Self, StirError> {
        let seg = split_token(token)?;
        Ok(Passport {
            header: PassportHeader::decode(seg.header)?,
            claims: Claims::decode(seg.payload)?,
            signature: b64_decode(seg.signature, "signature")?,
            signing_input: seg.signing_input.to_string(),
        })
    }

    /// Checks the ES256 signature with an uncompressed P-256 public key point.
    pub fn verify_signature(&self, public_key: &[u8]) -> Result<(), StirError> {
        verify_es256(self.signing_input.as_bytes(), &self.signature, public_key)
    }
}

/// ES256 over the signing input with the raw R‖S signature (RFC 7518 §3.4), not DER.
pub(crate) fn verify_es256(
    signing_input: &[u8],
    signature: &[u8],
    public_key: &[u8],
) -> Result<(), StirError> {
    if signature.len() != 64 {
        return Err(StirError::BadSignature(format!(
            "signature is {} bytes; ES256 is 64-byte R||S (a DER signature is ~70)",
            signature.len()
        )));
    }
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, public_key)
        .verify(signing_input, signature)
        .map_err(|_| StirError::BadSignature("does not match the certificate's key".into()))
}

fn json_object(segment: &str, what: &str) -> Result<Map<String, Value>, StirError> {
    let bytes = b64_decode(segment, what)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(StirError::Malformed(format!("{what} is not a JSON object"))),
        Err(e) => Err(StirError::Malformed(format!("{what} is not JSON: {e}"))),
    }
}

fn opt_string(
    obj: &Map<String, Value>,
    key: &str,
    what: &str,
) -> Result<Option<String>, StirError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(StirError::Malformed(format!(
            "{what} {key} is not a string: {v}"
        ))),
    }
}

fn string_array(v: Option<&Value>, name: &str) -> Result<Vec<String>, StirError> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                other => Err(StirError::BadClaim(format!(
                    "{name} holds a non-string: {other}"
                ))),
            })
            .collect(),
        Some(other) => Err(StirError::BadClaim(format!(
            "{name} is not an array (RFC 8225 §5.2.1): {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn claims_types() {
        let ok = r#"{"attest":"B","dest":{"tn":["18005551234"]},"iat":1700000000,"orig":{"tn":"12155551212"},"origid":"u"}"#;
        let c = Claims::decode(&b64(ok)).unwrap();
        assert_eq!(c.attest, Attestation::B);
        assert_eq!(c.iat, 1_700_000_000);
        assert_eq!(c.orig_tn, "12155551212");
        assert_eq!(c.dest_tn, vec!["18005551234".to_string()]);
        assert_eq!(c.origid.as_deref(), Some("u"));

        for (payload, needle) in [
            (
                r#"{"attest":"D","dest":{"tn":["1"]},"iat":1,"orig":{"tn":"2"}}"#,
                "attest",
            ),
            (
                r#"{"attest":"A","dest":{"tn":["1"]},"iat":"1443208345","orig":{"tn":"2"}}"#,
                "erratum",
            ),
            (
                r#"{"attest":"A","dest":{"tn":["1"]},"iat":1.5,"orig":{"tn":"2"}}"#,
                "iat",
            ),
            (
                r#"{"attest":"A","dest":{"tn":"1"},"iat":1,"orig":{"tn":"2"}}"#,
                "not an array",
            ),
            (
                r#"{"attest":"A","dest":"{\"tn\":\"1\"}","iat":1,"orig":{"tn":"2"}}"#,
                "dest is the string",
            ),
            (
                r#"{"attest":"A","dest":{"tn":["1"]},"iat":1,"orig":"{\"tn\":\"2\"}"}"#,
                "orig is the string",
            ),
            (
                r#"{"attest":"A","dest":{"tn":["1"]},"iat":1}"#,
                "orig is missing",
            ),
        ] {
            let e = Claims::decode(&b64(payload)).unwrap_err();
            assert!(matches!(e, StirError::BadClaim(_)), "{payload}: {e:?}");
            assert!(e.to_string().contains(needle), "{payload}: {e}");
            assert_eq!(e.sip_response().0, 438);
        }
    }

    #[test]
    fn split_rejects_compact_form_and_extra_dots() {
        assert!(split_token("a..c").is_err());
        assert!(split_token("a.b.c.d").is_err());
        assert!(split_token("a.b").is_err());
        let s = split_token("aa.bb.cc").unwrap();
        assert_eq!(s.signing_input, "aa.bb");
        assert_eq!(s.signature, "cc");
    }

    #[test]
    fn base64_variants() {
        assert_eq!(b64_decode("-_8", "x").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(b64_decode("+/8=", "x").unwrap(), vec![0xfb, 0xff]);
        assert!(b64_decode("-/8", "x").is_err());
    }

    #[test]
    fn der_signature_is_rejected_with_a_reason() {
        let e = verify_es256(b"x", &[0u8; 71], &[4u8; 65]).unwrap_err();
        assert!(e.to_string().contains("R||S"), "{e}");
    }
}
