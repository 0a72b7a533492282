//! A test CA made with rcgen (the `ring` backend, as the peers): it signs certificates for
//! given IP addresses or DNS names, valid now or expired. Used by the mutual TLS tests and the
//! NATS broker TLS tests.
#![allow(dead_code)]

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType,
    SerialNumber,
};

/// A CA that signs test certificates.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca");
        Ca { issuer }
    }

    /// A certificate for `sans` (IP addresses or DNS names) with `serial`; `expired` ended in
    /// 2021. Returns (certificate PEM, key PEM).
    pub fn issue(&self, sans: &[&str], serial: u64, expired: bool) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        for san in sans {
            params.subject_alt_names.push(match san.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*san).try_into().expect("dns name")),
            });
        }
        params.distinguished_name.push(DnType::CommonName, sans[0]);
        params.serial_number = Some(SerialNumber::from(serial));
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }
}
