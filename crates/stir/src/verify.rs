//! The verifier: RFC 8224 §6.2's steps (with RFC 8225, RFC 8588 and RFC 8226's certificate
//! checks) over every Identity header of a request.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use moka::future::Cache;
use rustls_pki_types::TrustAnchor;
use tollgate_core::{Attestation, IdentityHeader, IdentityValue, Verification};

use crate::cert::{StiCertificate, TnAuthList};
use crate::config::StirConfig;
use crate::error::{ConfigError, StirError};
use crate::fetch::{fetch, http_client, UrlPolicy};
use crate::passport::{b64_decode, split_token, verify_es256, Claims, PassportHeader};

/// What verification concluded for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StirVerification {
    /// At least one Identity header verified (RFC 8224 §6.2.1).
    Verified,
    /// Identity headers were present and none verified; the error is the first header's
    /// failure that was not an unsupported `ppt`, else that `UnsupportedPpt` (428).
    Failed(StirError),
    /// No Identity header at all.
    Absent,
}

/// The result of [`Verifier::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StirOutcome {
    /// The attestation of the verified PASSporT; None unless verified (a claim is not proof).
    pub attestation: Option<Attestation>,
    pub verification: StirVerification,
    /// The verified PASSporT's `origid`, for tracing the call back to its signer.
    pub origid: Option<String>,
}

impl StirOutcome {
    /// The core crate's form: `Failed` carries `"<kind>: <reason>"`, e.g.
    /// `"invalid-identity: orig.tn \"1\" does not match the ANI \"2\""`.
    pub fn core_verification(&self) -> Verification {
        match &self.verification {
            StirVerification::Verified => Verification::Verified,
            StirVerification::Absent => Verification::Absent,
            StirVerification::Failed(e) => {
                Verification::Failed(format!("{}: {e}", e.kind().as_str()))
            }
        }
    }

    /// The response a trunk that demands signed calls would send: None when verified,
    /// 428 when absent, else the error's (RFC 8224 §6.2.2).
    pub fn sip_response(&self) -> Option<(u16, &'static str)> {
        match &self.verification {
            StirVerification::Verified => None,
            StirVerification::Absent => Some(StirError::NoIdentity.sip_response()),
            StirVerification::Failed(e) => Some(e.sip_response()),
        }
    }
}

/// One PASSporT that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedPassport {
    pub claims: Claims,
    /// The x5u the key came from.
    pub x5u: String,
    /// The signing certificate's TNAuthList.
    pub tn_auth_list: TnAuthList,
}

/// What the cache keeps per x5u URL: the parsed credential, or why the body that URL served is
/// unusable (so a bad certificate is not refetched per call), and for how long.
#[derive(Debug)]
struct CacheEntry {
    ttl: Duration,
    credential: Result<StiCertificate, StirError>,
}

struct EntryExpiry;

impl moka::Expiry<String, Arc<CacheEntry>> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<CacheEntry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Verifies RFC 8224 Identity headers carrying SHAKEN PASSporTs. Build one per process and
/// share it: it owns the certificate cache and the HTTP client.
pub struct Verifier {
    anchors: Vec<TrustAnchor<'static>>,
    policy: UrlPolicy,
    client: reqwest::Client,
    cache: Cache<String, Arc<CacheEntry>>,
    freshness_s: u64,
    max_future_skew_s: u64,
    default_ttl: Duration,
    max_ttl: Duration,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("anchors", &self.anchors.len())
            .field("policy", &self.policy)
            .field("cached_certificates", &self.cache.entry_count())
            .field("freshness_s", &self.freshness_s)
            .field("max_future_skew_s", &self.max_future_skew_s)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Reads the trust anchors from `config.trust_anchors_dir` and builds the HTTP client.
    /// Fails if the directory holds no certificate: a verifier that trusts nothing would fail
    /// every call with 437 and look like a carrier problem.
    pub fn new(config: &StirConfig) -> Result<Self, ConfigError> {
        if let Some(p) = config.validate().into_iter().next() {
            return Err(ConfigError::Invalid {
                key: p.key,
                reason: p.message,
            });
        }
        let anchors = load_anchors(&config.trust_anchors_dir)?;
        let policy = UrlPolicy::new(&config.allowed_hosts, config.allow_http)?;
        let client = http_client(
            Duration::from_millis(config.fetch_timeout_ms),
            config.allow_http,
        )?;
        let cache = Cache::builder()
            .max_capacity(config.cert_cache_entries)
            .expire_after(EntryExpiry)
            .build();
        Ok(Verifier {
            anchors,
            policy,
            client,
            cache,
            freshness_s: config.freshness_s,
            max_future_skew_s: config.max_future_skew_s,
            default_ttl: Duration::from_secs(config.default_cert_ttl_s),
            max_ttl: Duration::from_secs(config.max_cert_ttl_s),
        })
    }

    /// How many trust anchors were loaded.
    pub fn trust_anchor_count(&self) -> usize {
        self.anchors.len()
    }

    /// Verifies a request's Identity headers (as the SIP layer parsed them: `CallFacts::identity`).
    ///
    /// `ani_digits` and `dnis_digits` are the canonical numbers (RFC 8224 §8.3: E.164 digits,
    /// no `+`); `now` is the time to judge `iat` and certificate validity by.
    /// The request verifies if any one header does (RFC 8224 §6.2.1).
    pub async fn verify(
        &self,
        identity_headers: &[IdentityValue],
        ani_digits: &str,
        dnis_digits: &str,
        now: SystemTime,
    ) -> StirOutcome {
        let mut first_error: Option<StirError> = None;
        for header in identity_headers {
            let verified = match header {
                IdentityValue::Parsed(h) => self.verify_one(h, ani_digits, dnis_digits, now).await,
                IdentityValue::Malformed(why) => Err(StirError::Malformed(why.clone())),
            };
            match verified {
                Ok(v) => {
                    return StirOutcome {
                        attestation: Some(v.claims.attest),
                        origid: v.claims.origid,
                        verification: StirVerification::Verified,
                    }
                }
                Err(e) => {
                    // An ignored header (unsupported ppt) never hides a real failure.
                    let replace = match &first_error {
                        None => true,
                        Some(StirError::UnsupportedPpt(_)) => {
                            !matches!(e, StirError::UnsupportedPpt(_))
                        }
                        Some(_) => false,
                    };
                    if replace {
                        first_error = Some(e);
                    }
                }
            }
        }
        StirOutcome {
            attestation: None,
            origid: None,
            verification: first_error.map_or(StirVerification::Absent, StirVerification::Failed),
        }
    }

    /// Verifies one Identity header value; checks run cheapest first, and nothing is fetched
    /// for a token that already fails on its own.
    pub async fn verify_one(
        &self,
        id: &IdentityHeader,
        ani_digits: &str,
        dnis_digits: &str,
        now: SystemTime,
    ) -> Result<VerifiedPassport, StirError> {
        let now_s = unix_secs(now);

        // Step 1: the Identity parameters (parsed by the SIP layer). Unsupported ppt: ignore
        // this header.
        let ppt = match id.ppt.as_deref() {
            Some(p) if p.eq_ignore_ascii_case("shaken") => p,
            other => return Err(StirError::UnsupportedPpt(other.map(str::to_string))),
        };
        // RFC 8224 §4: an absent alg means ES256.
        if let Some(alg) = id.alg.as_deref() {
            if alg != "ES256" {
                return Err(StirError::UnsupportedAlg(alg.to_string()));
            }
        }
        let info = id.info.as_deref().ok_or(StirError::MissingInfo)?;

        // Step 2: the JOSE header.
        let seg = split_token(&id.token)?;
        let header = PassportHeader::decode(seg.header)?;
        match header.typ.as_deref() {
            Some("passport") => {}
            other => return Err(StirError::WrongTyp(other.unwrap_or("(none)").to_string())),
        }
        match header.alg.as_deref() {
            Some("ES256") => {}
            other => {
                return Err(StirError::UnsupportedAlg(
                    other.unwrap_or("(none)").to_string(),
                ))
            }
        }
        match header.ppt.as_deref() {
            Some("shaken") => {}
            other => {
                return Err(StirError::PptMismatch {
                    passport: other.unwrap_or("(none)").to_string(),
                    identity: ppt.to_string(),
                })
            }
        }
        let x5u = header.x5u.ok_or(StirError::MissingX5u)?;
        if x5u != info {
            return Err(StirError::X5uMismatch {
                x5u,
                info: info.to_string(),
            });
        }

        // Step 3: claim types.
        let claims = Claims::decode(seg.payload)?;
        let signature = b64_decode(seg.signature, "signature")?;

        // Step 4: freshness.
        self.check_iat(claims.iat, now_s)?;

        // Step 5: the numbers signed are the numbers of this call.
        let ani = canonical_tn(ani_digits);
        let orig = canonical_tn(&claims.orig_tn);
        if ani.is_empty() || orig != ani {
            return Err(StirError::OrigMismatch {
                passport: claims.orig_tn.clone(),
                ani: ani_digits.to_string(),
            });
        }
        let dnis = canonical_tn(dnis_digits);
        if dnis.is_empty() || !claims.dest_tn.iter().any(|tn| canonical_tn(tn) == dnis) {
            return Err(StirError::DestMismatch {
                passport: claims.dest_tn.clone(),
                dnis: dnis_digits.to_string(),
            });
        }

        // Step 6: the credential, then step 7: the signature.
        let entry = self.credential(&x5u).await?;
        let cert = entry.credential.as_ref().map_err(Clone::clone)?;
        let public_key = cert.public_key()?;
        let tn_auth_list = cert.tn_auth_list()?;
        cert.check_chain(&self.anchors, now_s)?;
        verify_es256(seg.signing_input.as_bytes(), &signature, public_key)?;

        Ok(VerifiedPassport {
            tn_auth_list: tn_auth_list.clone(),
            claims,
            x5u,
        })
    }

    /// Checks `cert`'s chain to the trust anchors with validity dates at `now` (437 on
    /// failure). [`Verifier::verify`] does this itself; this is for inspecting a certificate.
    pub fn check_chain(&self, cert: &StiCertificate, now: SystemTime) -> Result<(), StirError> {
        cert.check_chain(&self.anchors, unix_secs(now))
    }

    fn check_iat(&self, iat: i64, now: u64) -> Result<(), StirError> {
        let now = i128::from(now);
        let iat_wide = i128::from(iat);
        if iat_wide > now {
            let ahead = u64::try_from(iat_wide - now).unwrap_or(u64::MAX);
            if ahead > self.max_future_skew_s {
                return Err(StirError::FutureIat {
                    iat,
                    ahead,
                    skew: self.max_future_skew_s,
                });
            }
        } else {
            let age = u64::try_from(now - iat_wide).unwrap_or(u64::MAX);
            if age > self.freshness_s {
                return Err(StirError::Stale {
                    iat,
                    age,
                    window: self.freshness_s,
                });
            }
        }
        Ok(())
    }

    /// The cached credential for `x5u`, fetched once however many calls ask at the same time
    /// (moka's try_get_with is single-flight). Fetch failures are not cached: the next call
    /// tries again.
    async fn credential(&self, x5u: &str) -> Result<Arc<CacheEntry>, StirError> {
        if let Some(hit) = self.cache.get(x5u).await {
            return Ok(hit);
        }
        // Checked before any request: a refused host is never contacted.
        let url = self.policy.check(x5u)?;
        self.cache
            .try_get_with(x5u.to_string(), async {
                tracing::debug!(x5u, "fetching STI certificate");
                let (body, max_age) = fetch(&self.client, url).await?;
                let ttl = max_age.unwrap_or(self.default_ttl).min(self.max_ttl);
                let credential = StiCertificate::from_body(&body, x5u);
                Ok::<_, StirError>(Arc::new(CacheEntry { ttl, credential }))
            })
            .await
            .map_err(|e| (*e).clone())
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// RFC 8224 §8.3 canonical form for comparison: digits, `#` and `*` only.
fn canonical_tn(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_digit() || *c == '#' || *c == '*')
        .collect()
}

/// Every CERTIFICATE in every `.pem`/`.crt`/`.cer` file of `dir`, as webpki trust anchors.
fn load_anchors(dir: &Path) -> Result<Vec<TrustAnchor<'static>>, ConfigError> {
    let io = |source| ConfigError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "pem" | "crt" | "cer"))
        })
        .collect();
    paths.sort();
    let mut anchors = Vec::new();
    for path in paths {
        let bad = |reason: String| ConfigError::BadAnchor {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(&path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        for der in crate::cert::read_certificates(&bytes).map_err(bad)? {
            let anchor = webpki::anchor_from_trusted_cert(&der)
                .map_err(|e| bad(e.to_string()))?
                .to_owned();
            anchors.push(anchor);
        }
    }
    if anchors.is_empty() {
        return Err(ConfigError::NoAnchors(dir.display().to_string()));
    }
    Ok(anchors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical() {
        assert_eq!(canonical_tn("+1 (215) 555-1212"), "12155551212");
        assert_eq!(canonical_tn("*67#"), "*67#");
    }

    #[test]
    fn outcome_mapping() {
        let absent = StirOutcome {
            attestation: None,
            verification: StirVerification::Absent,
            origid: None,
        };
        assert_eq!(absent.sip_response(), Some((428, "Use Identity Header")));
        assert_eq!(absent.core_verification(), Verification::Absent);
        let failed = StirOutcome {
            verification: StirVerification::Failed(StirError::BadSignature("x".into())),
            ..absent.clone()
        };
        assert_eq!(
            failed.sip_response(),
            Some((438, "Invalid Identity Header"))
        );
        assert_eq!(
            failed.core_verification(),
            Verification::Failed("invalid-identity: ES256 signature does not verify: x".into())
        );
    }
}
