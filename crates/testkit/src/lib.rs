//! Test support shared by the crates' tests, the integration tests and the benchmark tools. No
//! production crate depends on it.
//!
//! [`Ca`]: a throwaway certificate authority made with rcgen, and the leaf certificates it
//! signs, as PEM text or files: the TLS listener's certificate, a carrier SBC's client
//! certificate, an expired one.
//!
//! [`facts::us_caller`]: the facts of a US caller to a dialled number as number intelligence
//! leaves them, for tests that decide without the SIP layer (the allocation tests).
#![allow(clippy::expect_used)]

pub mod facts;

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

/// A certificate authority for one test.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

/// A leaf certificate and its key, PEM.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    /// A new CA named `name` (its common name).
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("CA key");
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        Self { params, key, pem }
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A certificate for the SAN DNS name `dns`, usable as a TLS server and client certificate,
    /// valid now (or, with `expired`, only in 2020).
    pub fn leaf(&self, dns: &str, expired: bool) -> Leaf {
        let mut params = CertificateParams::new(vec![dns.to_owned()]).expect("leaf params");
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &Issuer::from_params(&self.params, &self.key))
            .expect("leaf certificate");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// [`Ca::leaf`] written to `<dir>/<stem>.pem` and `<dir>/<stem>.key`; their paths.
    pub fn write_leaf(&self, dir: &Path, stem: &str, dns: &str) -> (PathBuf, PathBuf) {
        let leaf = self.leaf(dns, false);
        let (c, k) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&c, leaf.cert).expect("write the certificate");
        std::fs::write(&k, leaf.key).expect("write the key");
        (c, k)
    }

    /// The CA's certificate written to `path`.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, &self.pem).expect("write the CA certificate");
        path.to_owned()
    }
}
