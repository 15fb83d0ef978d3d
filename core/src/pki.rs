//! TLS for a cluster's servers: one certificate authority per cluster, one certificate
//! per node, signed by it.
//!
//! Every private key is ECDSA P-256 with a scalar derived from the master key for that
//! cluster or node ([`MasterKey::derive_seed`]), like the backup passphrases: nothing is
//! stored, nothing can leak from the database, and the same inputs give the same
//! certificate byte for byte (RFC 6979 signatures are deterministic, validity windows
//! are fixed steps), so pushing a configuration twice changes no file. Not Ed25519:
//! libpq 15 cannot do SCRAM channel binding with an Ed25519-signed server certificate
//! ("could not find digest for NID UNDEF"), and P-256 is what every client reads.
//!
//! A node certificate belongs to a window: windows are `renew_every` long, counted from
//! the cluster's creation, and a certificate is valid for [`NODE_LIFETIME_WINDOWS`]
//! windows from the start of its own. The first configuration pushed in a new window
//! carries the renewed certificate; the worker pushes one when a window starts (see
//! `NodeCertificate::renew_at`), and the two windows of slack are for a cluster that
//! is busy or down when it should have been renewed.

use std::net::IpAddr;

use chrono::{DateTime, Duration, TimeZone, Utc};
use p256::ecdsa::signature::Signer;
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber, SignatureAlgorithm, SigningKey,
};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::crypto::MasterKey;

const CA_KEY: &str = "tls-cluster-ca";
const NODE_KEY: &str = "tls-node";
const CLIENT_KEY: &str = "tls-control-plane";
/// The subject of Herd's own client certificate in every cluster.
pub const CONTROL_PLANE_NAME: &str = "herd-control-plane";
const SERIAL: &str = "tls-serial";
/// The CA outlives any cluster we expect; rotating it is a reconfiguration of every node.
pub const CA_LIFETIME_DAYS: i64 = 20 * 365;
/// The default renewal period of node certificates.
pub const DEFAULT_RENEW_EVERY: Duration = Duration::days(30);
/// A node certificate is valid this many renewal periods from the start of its window.
pub const NODE_LIFETIME_WINDOWS: i32 = 3;
/// Certificates start this much before their window, for clocks a little behind.
const SKEW: Duration = Duration::hours(1);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("certificate name {0:?} is not a valid DNS name")]
    BadName(String),
    #[error("timestamp out of range")]
    Time,
    #[error("no valid private key could be derived")]
    Key,
}

/// A cluster's certificate authority, derived again wherever it is needed.
pub struct ClusterCa {
    issuer: Issuer<'static, DerivedKey>,
    cert_pem: String,
    epoch: DateTime<Utc>,
}

/// A node's certificate (for its server and client roles) and private key, PEM.
pub struct NodeCertificate {
    pub cert_pem: String,
    pub key_pem: SecretString,
    pub not_after: DateTime<Utc>,
    /// When its window ends: the next configuration pushed after it renews it.
    pub renew_at: DateTime<Utc>,
}

impl ClusterCa {
    /// The CA of cluster `cluster_id`, created at `created_at` (its validity starts
    /// then, so it is the same certificate every time).
    pub fn derive(master: &MasterKey, cluster_id: Uuid, created_at: DateTime<Utc>) -> Result<Self, PkiError> {
        let key = key_pair(master, CA_KEY, &cluster_id.to_string())?;
        let epoch = whole_seconds(created_at)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name("Herd", &format!("Herd CA of cluster {cluster_id}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = offset(epoch - SKEW)?;
        params.not_after = offset(epoch + Duration::days(CA_LIFETIME_DAYS))?;
        params.serial_number = Some(serial(master, &format!("ca:{cluster_id}")));
        let cert = params.self_signed(&key)?;
        Ok(Self { cert_pem: cert.pem(), issuer: Issuer::new(params, key), epoch })
    }

    /// The CA certificate, what clients verify servers against.
    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The certificate of node `node_id` for the `renew_every` window `now` falls in:
    /// subject `dns_names[0]`, valid for `dns_names` and `addresses`, for TLS servers
    /// and clients.
    pub fn issue_node(
        &self,
        master: &MasterKey,
        node_id: Uuid,
        dns_names: &[String],
        addresses: &[IpAddr],
        now: DateTime<Utc>,
        renew_every: Duration,
    ) -> Result<NodeCertificate, PkiError> {
        let sans = dns_names
            .iter()
            .map(|n| n.clone().try_into().map(SanType::DnsName).map_err(|_| PkiError::BadName(n.clone())))
            .chain(addresses.iter().map(|a| Ok(SanType::IpAddress(*a))))
            .collect::<Result<_, _>>()?;
        let leaf = Leaf {
            key: (NODE_KEY, node_id.to_string()),
            serial: format!("node:{node_id}"),
            subject: dns_names.first().map(String::as_str).unwrap_or("herd-node"),
            sans,
            usages: vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        };
        self.issue(master, leaf, now, renew_every)
    }

    /// Herd's own client certificate for this cluster (what it presents to the
    /// members' etcd and Patroni), for the window `now` falls in: client
    /// authentication only, no names, so it can never serve as a node.
    pub fn issue_control_plane(
        &self,
        master: &MasterKey,
        cluster_id: Uuid,
        now: DateTime<Utc>,
        renew_every: Duration,
    ) -> Result<NodeCertificate, PkiError> {
        let leaf = Leaf {
            key: (CLIENT_KEY, cluster_id.to_string()),
            serial: format!("control-plane:{cluster_id}"),
            subject: CONTROL_PLANE_NAME,
            sans: Vec::new(),
            usages: vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        self.issue(master, leaf, now, renew_every)
    }

    /// Signs `leaf` for the window `now` falls in, valid [`NODE_LIFETIME_WINDOWS`].
    fn issue(
        &self,
        master: &MasterKey,
        leaf: Leaf<'_>,
        now: DateTime<Utc>,
        renew_every: Duration,
    ) -> Result<NodeCertificate, PkiError> {
        let (window, start, renew_at) = window_of(self.epoch, now, renew_every);
        let not_after = start + (renew_at - start) * NODE_LIFETIME_WINDOWS;
        let key = key_pair(master, leaf.key.0, &leaf.key.1)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name("Herd", leaf.subject);
        params.subject_alt_names = leaf.sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = leaf.usages;
        params.use_authority_key_identifier_extension = true;
        params.not_before = offset(start - SKEW)?;
        params.not_after = offset(not_after)?;
        params.serial_number = Some(serial(master, &format!("{}:{window}", leaf.serial)));
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(NodeCertificate { cert_pem: cert.pem(), key_pem: key.pkcs8_pem()?, not_after, renew_at })
    }
}

/// What differs between the leaf certificates a cluster's CA signs.
struct Leaf<'a> {
    /// The key's derivation purpose and id.
    key: (&'static str, String),
    /// The serial's derivation input, before the window number.
    serial: String,
    subject: &'a str,
    sans: Vec<SanType>,
    usages: Vec<ExtendedKeyUsagePurpose>,
}

fn name(org: &str, common: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, common);
    dn
}

/// A P-256 key whose scalar is derived from the master key; it signs for rcgen with
/// deterministic ECDSA.
struct DerivedKey {
    key: p256::ecdsa::SigningKey,
    /// The public point, uncompressed (what SubjectPublicKeyInfo carries).
    public: Vec<u8>,
}

impl PublicKeyData for DerivedKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

impl SigningKey for DerivedKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let sig: p256::ecdsa::Signature = self.key.sign(msg);
        Ok(sig.to_der().as_bytes().to_vec())
    }
}

impl DerivedKey {
    /// PKCS#8 PEM, what PostgreSQL, etcd and Patroni read as a key file.
    fn pkcs8_pem(&self) -> Result<SecretString, PkiError> {
        let secret = p256::SecretKey::from(self.key.as_nonzero_scalar());
        let pem = secret.to_pkcs8_pem(LineEnding::LF).map_err(|_| PkiError::Key)?;
        Ok(SecretString::from(pem.as_str().to_owned()))
    }
}

fn key_pair(master: &MasterKey, purpose: &str, id: &str) -> Result<DerivedKey, PkiError> {
    // A seed is a valid scalar unless it is zero or at least the group order (odds
    // about 2^-32): then the next attempt's seed is used.
    for attempt in 0..8u8 {
        let seed = master.derive_seed(purpose, &format!("{id}:{attempt}"));
        if let Ok(key) = p256::ecdsa::SigningKey::from_bytes(seed.expose_secret().into()) {
            let public = key.verifying_key().to_encoded_point(false).as_bytes().to_vec();
            return Ok(DerivedKey { key, public });
        }
    }
    Err(PkiError::Key)
}

/// A positive 16-byte serial, unique per certificate and stable for the same one.
fn serial(master: &MasterKey, what: &str) -> SerialNumber {
    let seed = master.derive_seed(SERIAL, what);
    let mut b = seed.expose_secret()[..16].to_vec();
    b[0] = (b[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&b)
}

/// The number, start and end of the `renew_every` window `now` falls in, counted from
/// `epoch` (whole seconds, at least one).
fn window_of(epoch: DateTime<Utc>, now: DateTime<Utc>, renew_every: Duration) -> (i64, DateTime<Utc>, DateTime<Utc>) {
    let period = renew_every.num_seconds().max(1);
    let window = (now - epoch).num_seconds().max(0) / period;
    let start = epoch + Duration::seconds(window * period);
    (window, start, start + Duration::seconds(period))
}

/// When the node certificates a cluster created at `created_at` gets at `now` are due
/// for renewal: the end of the current window.
pub fn renew_at(
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
    renew_every: Duration,
) -> Result<DateTime<Utc>, PkiError> {
    Ok(window_of(whole_seconds(created_at)?, now, renew_every).2)
}

fn whole_seconds(t: DateTime<Utc>) -> Result<DateTime<Utc>, PkiError> {
    Utc.timestamp_opt(t.timestamp(), 0).single().ok_or(PkiError::Time)
}

fn offset(t: DateTime<Utc>) -> Result<time::OffsetDateTime, PkiError> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp()).map_err(|_| PkiError::Time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_same_inputs_give_the_same_certificates_and_others_differ() {
        let master = MasterKey::generate();
        let (id, created) = (Uuid::new_v4(), at("2026-01-02T03:04:05.678Z"));
        let a = ClusterCa::derive(&master, id, created).unwrap();
        let b = ClusterCa::derive(&master, id, created).unwrap();
        assert_eq!(a.certificate_pem(), b.certificate_pem());
        assert!(a.certificate_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let other = ClusterCa::derive(&master, Uuid::new_v4(), created).unwrap();
        assert_ne!(a.certificate_pem(), other.certificate_pem());
        let other_master = ClusterCa::derive(&MasterKey::generate(), id, created).unwrap();
        assert_ne!(a.certificate_pem(), other_master.certificate_pem());

        let node = Uuid::new_v4();
        let names = vec!["db-0".to_owned()];
        let addrs = ["127.0.0.5".parse().unwrap()];
        let month = DEFAULT_RENEW_EVERY;
        let n1 = a.issue_node(&master, node, &names, &addrs, at("2026-01-10T00:00:00Z"), month).unwrap();
        let n2 = b.issue_node(&master, node, &names, &addrs, at("2026-01-20T00:00:00Z"), month).unwrap();
        assert_eq!(n1.cert_pem, n2.cert_pem, "same window, same certificate");
        assert_eq!(n1.key_pem.expose_secret(), n2.key_pem.expose_secret());
        assert!(n1.key_pem.expose_secret().starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(!n1.key_pem.expose_secret().contains("BEGIN PRIVATE KEY-----\n-----"), "a key, not an empty block");
        // The next window renews it, valid well past the old one's end.
        let n3 = a.issue_node(&master, node, &names, &addrs, at("2026-02-05T00:00:00Z"), month).unwrap();
        assert_ne!(n1.cert_pem, n3.cert_pem);
        assert_eq!(n3.not_after - n1.not_after, month);
        assert_eq!(n3.renew_at - n1.renew_at, month);
        // Renewed at the end of its window, with two more windows of validity left.
        assert_eq!(n1.renew_at, created.with_nanosecond(0).unwrap() + month);
        assert_eq!(n1.not_after - n1.renew_at, month * (NODE_LIFETIME_WINDOWS - 1));
        // A short period (what the renewal test runs with) counts in seconds.
        let s = a.issue_node(&master, node, &names, &addrs, created + Duration::seconds(95), Duration::seconds(30));
        assert_eq!(s.unwrap().renew_at, created.with_nanosecond(0).unwrap() + Duration::seconds(120));
        // OpenSSL (what libpq uses) verifies the chain, the purpose and the address,
        // and refuses another address or another cluster's CA.
        let dir = std::env::temp_dir().join(format!("herd-pki-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, pem: &str| {
            let p = dir.join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        let (ca_file, other_file) = (file("ca.pem", a.certificate_pem()), file("other.pem", other.certificate_pem()));
        let node_file = file("node.pem", &n1.cert_pem);
        let verify = |ca: &std::path::Path, ip: &str| {
            let out = std::process::Command::new("openssl")
                .args(["verify", "-purpose", "sslserver", "-attime", "1768521600", "-verify_ip", ip, "-CAfile"])
                .arg(ca)
                .arg(&node_file)
                .output()
                .expect("openssl");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
            )
        };
        let (ok, text) = verify(&ca_file, "127.0.0.5");
        assert!(ok, "{text}");
        assert!(!verify(&ca_file, "127.0.0.6").0, "another address");
        assert!(!verify(&other_file, "127.0.0.5").0, "another cluster's CA");
        // Herd's client certificate is a client's only: never a server's.
        let herd = a.issue_control_plane(&master, id, at("2026-01-10T00:00:00Z"), month).unwrap();
        let herd_file = file("herd.pem", &herd.cert_pem);
        let purpose = |p: &str| {
            std::process::Command::new("openssl")
                .args(["verify", "-purpose", p, "-attime", "1768521600", "-CAfile"])
                .arg(&ca_file)
                .arg(&herd_file)
                .output()
                .expect("openssl")
                .status
                .success()
        };
        assert!(purpose("sslclient"));
        assert!(!purpose("sslserver"));
        assert_ne!(herd.key_pem.expose_secret(), n1.key_pem.expose_secret());
        std::fs::remove_dir_all(&dir).unwrap();
        // A bad name is refused, not written into a certificate.
        assert!(a.issue_node(&master, node, &["b\u{e4}d".into()], &addrs, created, month).is_err());
    }
}
