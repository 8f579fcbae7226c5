//! The RFC 8224 `Identity` header as the SIP layer parsed it (`tollgate_sip::identity`), for
//! the STIR/SHAKEN verifier: plain data, no parsing here.

/// One parsed `Identity` header value (RFC 8224 §4).
///
/// ```text
/// Identity: <hdr>.<payload>.<sig>;info=<https://cert.example.org/passport.cer>;alg=ES256;ppt=shaken
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityHeader {
    /// The compact JWS `hdr.payload.sig`, exactly as received (the signature covers its bytes).
    pub token: String,
    /// The `info` URL without its angle brackets or quotes.
    pub info: Option<String>,
    /// The `alg` parameter; RFC 8224 §4 makes ES256 the default when it is absent.
    pub alg: Option<String>,
    /// The `ppt` parameter (`shaken`, `div`, `rph`, ...).
    pub ppt: Option<String>,
    /// Any other parameter, name lowercased, value unquoted.
    pub other: Vec<(String, Option<String>)>,
}

/// One `Identity` header of a call: parsed, or why it could not be (the verifier answers that
/// 438 Invalid Identity Header, RFC 8224 §6.2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityValue {
    Parsed(IdentityHeader),
    Malformed(String),
}
