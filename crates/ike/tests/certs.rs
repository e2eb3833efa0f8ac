//! Certificate authentication (RFC 7296 §2.15 with RFC 7427 signatures) through
//! `plexgate-pki`, with the test PKI in `keys/test/`: an initiator and a responder
//! [`Endpoint`] in memory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexgate_ike::config::{AuthConfig, ChildConfig, Config, EspProposal, Identity, PeerConfig};
use plexgate_ike::message::id_type;
use plexgate_ike::{Endpoint, Event, SeededRng, TrafficSelector};
use plexgate_pki::{Certificate, LocalCredentials, LocalSigner, TrustStore};

fn keys() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("../../keys/test")
}

fn creds(key: &str, cert: &str, chain: &[&str]) -> Arc<LocalCredentials> {
    let k = LocalSigner::load(keys().join(key)).unwrap();
    let c = Certificate::load(keys().join(cert)).unwrap();
    let ch = chain
        .iter()
        .map(|p| Certificate::load(keys().join(p)).unwrap())
        .collect();
    Arc::new(LocalCredentials::new(k, c, ch).unwrap())
}

fn trust(cas: &[&str]) -> Arc<TrustStore> {
    let paths: Vec<PathBuf> = cas.iter().map(|c| keys().join(c)).collect();
    Arc::new(TrustStore::from_files(&paths).unwrap())
}

fn peer(name: &str, me: &str, them: &str, auth: AuthConfig, gw: bool) -> PeerConfig {
    let (a, b) = (
        "192.168.1.1".parse().unwrap(),
        "203.0.113.5".parse().unwrap(),
    );
    let (l, r) = if gw { (b, a) } else { (a, b) };
    let child = ChildConfig::new(
        "net",
        vec![TrafficSelector::host(l)],
        vec![TrafficSelector::host(r)],
        vec![EspProposal::AES256GCM16],
    );
    let mut p = PeerConfig::psk(name, me, them, b"", child);
    p.auth = auth;
    p.local_addr = Some(
        if gw { "10.0.0.2:500" } else { "10.0.0.1:500" }
            .parse()
            .unwrap(),
    );
    p.remote_addr = (!gw).then(|| "10.0.0.2:500".parse().unwrap());
    p
}

struct Run {
    client: Vec<Event>,
    gw: Vec<Event>,
}

/// Drive both endpoints (no loss) until quiet and collect their events.
fn run(client: PeerConfig, gw: PeerConfig) -> Run {
    let now = Instant::now();
    let mut c = Endpoint::new(
        Arc::new(Config {
            peers: vec![client],
            ..Config::default()
        }),
        Box::new(SeededRng::new(1)),
    );
    let mut g = Endpoint::new(
        Arc::new(Config {
            peers: vec![gw],
            ..Config::default()
        }),
        Box::new(SeededRng::new(2)),
    );
    c.initiate(now, "gw", "net").unwrap();
    for _ in 0..6 {
        while let Some(t) = c.poll_transmit() {
            g.handle(now, t.remote, t.local, &t.payload);
        }
        while let Some(t) = g.poll_transmit() {
            c.handle(now, t.remote, t.local, &t.payload);
        }
    }
    c.handle_timeout(now + Duration::from_secs(1));
    Run {
        client: std::iter::from_fn(|| c.poll_event()).collect(),
        gw: std::iter::from_fn(|| g.poll_event()).collect(),
    }
}

fn child_up(ev: &[Event]) -> Option<plexgate_ike::ChildSa> {
    ev.iter().find_map(|e| match e {
        Event::ChildSaUp { child, .. } => Some(child.clone()),
        _ => None,
    })
}

fn cert_auth(key: &str, cert: &str, chain: &[&str], cas: &[&str]) -> AuthConfig {
    AuthConfig::Cert {
        credentials: creds(key, cert, chain),
        trust: trust(cas),
    }
}

/// The gateway with the ECDSA test certificate, accepting any identity the CA vouches for.
fn ecdsa_gw() -> PeerConfig {
    peer(
        "c",
        "gw.plexgate.test",
        "%any",
        cert_auth("private/gw.pem", "x509/gw.pem", &[], &["x509ca/ca.pem"]),
        true,
    )
}

/// The client with the ECDSA test certificate, claiming `local_id`.
fn ecdsa_client(local_id: &str) -> PeerConfig {
    peer(
        "gw",
        local_id,
        "gw.plexgate.test",
        cert_auth(
            "private/client.pem",
            "x509/client.pem",
            &[],
            &["x509ca/ca.pem"],
        ),
        false,
    )
}

#[test]
fn ecdsa_certificates_both_ways() {
    let client = ecdsa_client("client.plexgate.test");
    let gw = ecdsa_gw();
    let r = run(client, gw);
    let (c, g) = (
        child_up(&r.client).expect("client child"),
        child_up(&r.gw).expect("gw child"),
    );
    assert_eq!(c.keys_in, g.keys_out);
    assert_eq!(c.keys_out, g.keys_in);
    let rec =
        r.gw.iter()
            .find_map(|e| {
                if let Event::IkeSaUp { record, .. } = e {
                    Some(record.clone())
                } else {
                    None
                }
            })
            .unwrap();
    assert_eq!(rec.remote_id.id_type, id_type::FQDN);
    assert_eq!(rec.remote_id.to_string(), "client.plexgate.test");
}

#[test]
fn distinguished_name_identities_and_rsa() {
    let client = peer(
        "gw",
        "C=CH, O=plexgate test, CN=rsa-client.plexgate.test",
        "C=CH, O=plexgate test, CN=gw.plexgate.test",
        cert_auth(
            "private/rsa-client.pem",
            "x509/rsa-client.pem",
            &[],
            &["x509ca/ca.pem"],
        ),
        false,
    );
    let gw = peer(
        "c",
        "C=CH, O=plexgate test, CN=gw.plexgate.test",
        "C=CH, O=plexgate test, CN=rsa-client.plexgate.test",
        cert_auth(
            "private/gw.pem",
            "x509/gw.pem",
            &[],
            &["x509ca/ca.pem", "x509ca/rsa-ca.pem"],
        ),
        true,
    );
    let r = run(client, gw);
    assert!(child_up(&r.client).is_some(), "{:?}", r.client);
    let rec =
        r.gw.iter()
            .find_map(|e| {
                if let Event::IkeSaUp { record, .. } = e {
                    Some(record.clone())
                } else {
                    None
                }
            })
            .unwrap();
    assert_eq!(rec.remote_id.id_type, id_type::DER_ASN1_DN);
}

#[test]
fn intermediate_ca_chain_is_sent_and_verified() {
    let client = peer(
        "gw",
        "p384-client.plexgate.test",
        "gw.plexgate.test",
        cert_auth(
            "private/p384-client.pem",
            "x509/p384-client.pem",
            &["x509/sub-ca.pem"],
            &["x509ca/ca.pem"],
        ),
        false,
    );
    let gw = ecdsa_gw();
    let r = run(client, gw);
    assert!(child_up(&r.gw).is_some(), "{:?}", r.gw);
}

#[test]
fn untrusted_certificate_is_refused_with_a_reason() {
    let client = peer(
        "gw",
        "client.plexgate.test",
        "gw.plexgate.test",
        cert_auth(
            "untrusted/client-key.pem",
            "untrusted/client.pem",
            &[],
            &["x509ca/ca.pem"],
        ),
        false,
    );
    let gw = ecdsa_gw();
    let r = run(client, gw);
    assert!(child_up(&r.gw).is_none());
    let reason =
        r.gw.iter()
            .find_map(|e| {
                if let Event::AuthFailed { reason, .. } = e {
                    Some(reason.clone())
                } else {
                    None
                }
            })
            .unwrap();
    assert!(
        reason.contains("certificate authentication of 'client.plexgate.test' failed"),
        "{reason}"
    );
    assert!(r
        .client
        .iter()
        .any(|e| matches!(e, Event::AuthFailed { .. })));
}

#[test]
fn identity_not_in_certificate_is_refused() {
    // The client claims the gateway's name with its own (valid) certificate.
    let client = ecdsa_client("gw.plexgate.test");
    let gw = ecdsa_gw();
    let r = run(client, gw);
    assert!(child_up(&r.gw).is_none());
    assert!(r.gw.iter().any(|e| matches!(e, Event::AuthFailed { .. })));
}

#[test]
fn identity_strings_map_like_strongswan() {
    assert_eq!(
        Identity("client@example".into()).to_wire().id_type,
        id_type::RFC822_ADDR
    );
    assert_eq!(
        Identity("gw.example".into()).to_wire().id_type,
        id_type::FQDN
    );
    assert_eq!(
        Identity("10.1.2.3".into()).to_wire().data,
        vec![10, 1, 2, 3]
    );
    assert_eq!(
        Identity("2001:db8::1".into()).to_wire().id_type,
        id_type::IPV6_ADDR
    );
    let dn = Identity("C=CH, O=plexgate test, CN=gw".into());
    let w = dn.to_wire();
    assert_eq!(w.id_type, id_type::DER_ASN1_DN);
    assert!(Identity("C=CH,O=plexgate test,CN=GW".into()).matches(&w));
    assert!(!Identity("C=CH, O=plexgate test, CN=other".into()).matches(&w));
    assert!(Identity("%any".into()).matches(&w));
}
