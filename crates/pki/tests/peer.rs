//! `TrustStore::authenticate_peer`: the whole certificate authentication of a peer,
//! as the IKE engine runs it on IKE_AUTH.

mod common;
use common::*;

use plexgate_pki::{Identity, PeerAuth, PkiError};

const OCTETS: &[u8] = b"ResponderRealMessage | Ni | prf(SK_pr, IDr')";

#[test]
fn gateway_authenticates_with_cert_id_and_signature() {
    let cas = store(&["x509ca/ca.pem"]);
    let gw_cert = cert("x509/gw.pem");
    let key = signer("gw.pem");
    assert!(key.matches_certificate(&gw_cert));
    assert!(!key.matches_certificate(&cert("x509/client.pem")));
    let (method, data) = key.sign(OCTETS, &[2, 3, 4, 5]).expect("sign");
    let ids = [
        Identity::parse("gw.plexgate.test").expect("id"),
        gw_cert.subject_identity().expect("dn"),
        Identity::parse("192.0.2.10").expect("ip"),
    ];
    for id in &ids {
        let peer = PeerAuth {
            cert_payloads: &[gw_cert.der()],
            identity: id,
            auth_method: method,
            auth_data: &data,
            signed_octets: OCTETS,
        };
        let v = cas
            .authenticate_peer(&peer, now())
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(
            v.subject.to_string(),
            "C=CH, O=plexgate test, CN=gw.plexgate.test"
        );
    }
}

#[test]
fn each_check_can_fail() {
    let cas = store(&["x509ca/ca.pem"]);
    let gw_cert = cert("x509/gw.pem");
    let (method, data) = signer("gw.pem").sign(OCTETS, &[2]).expect("sign");
    let id = Identity::parse("gw.plexgate.test").expect("id");
    let ok = PeerAuth {
        cert_payloads: &[gw_cert.der()],
        identity: &id,
        auth_method: method,
        auth_data: &data,
        signed_octets: OCTETS,
    };
    cas.authenticate_peer(&ok, now()).expect("baseline");

    let no_cert = PeerAuth {
        cert_payloads: &[],
        ..ok
    };
    assert!(matches!(
        cas.authenticate_peer(&no_cert, now()),
        Err(PkiError::NoPeerCertificate)
    ));

    let other = Identity::parse("client.plexgate.test").expect("id");
    let wrong_id = PeerAuth {
        identity: &other,
        ..ok
    };
    let err = cas
        .authenticate_peer(&wrong_id, now())
        .expect_err("identity");
    assert!(matches!(err, PkiError::IdentityMismatch { .. }), "{err}");

    let wrong_octets = PeerAuth {
        signed_octets: b"replayed",
        ..ok
    };
    let err = cas
        .authenticate_peer(&wrong_octets, now())
        .expect_err("signature");
    assert!(matches!(err, PkiError::BadSignature { .. }), "{err}");

    // The untrusted client signs correctly with its own key and claims the real
    // client's name: refused by the chain check.
    let fake = cert("untrusted/client.pem");
    let fake_key =
        plexgate_pki::LocalSigner::load(keys().join("untrusted/client-key.pem")).expect("key");
    let (m, d) = fake_key.sign(OCTETS, &[2]).expect("sign");
    let client_id = Identity::parse("client.plexgate.test").expect("id");
    let fake_auth = PeerAuth {
        cert_payloads: &[fake.der()],
        identity: &client_id,
        auth_method: m,
        auth_data: &d,
        signed_octets: OCTETS,
    };
    let err = cas
        .authenticate_peer(&fake_auth, now())
        .expect_err("untrusted");
    assert!(matches!(err, PkiError::UntrustedIssuer { .. }), "{err}");

    let garbage = PeerAuth {
        cert_payloads: &[b"\x30\x03\x02\x01\x00"],
        ..ok
    };
    assert!(matches!(
        cas.authenticate_peer(&garbage, now()),
        Err(PkiError::BadCertificate(_))
    ));
}

#[test]
fn intermediate_in_second_cert_payload() {
    let cas = store(&["x509ca/ca.pem"]);
    let ee = cert("x509/p384-client.pem");
    let sub = cert("x509/sub-ca.pem");
    let (method, data) = signer("p384-client.pem").sign(OCTETS, &[]).expect("sign");
    assert_eq!(method, 10);
    let id = Identity::parse("p384-client.plexgate.test").expect("id");
    let peer = PeerAuth {
        cert_payloads: &[ee.der(), sub.der()],
        identity: &id,
        auth_method: method,
        auth_data: &data,
        signed_octets: OCTETS,
    };
    let v = cas.authenticate_peer(&peer, now()).expect("authenticated");
    assert_eq!(v.path.len(), 3);
}

#[test]
fn local_credentials_load_and_check() {
    use plexgate_pki::LocalCredentials;
    let k = keys();
    let gw = LocalCredentials::load(k.join("private/gw.pem"), k.join("x509/gw.pem")).expect("gw");
    assert_eq!(gw.cert_payloads(), vec![cert("x509/gw.pem").der()]);
    assert_eq!(
        gw.default_identity().expect("id"),
        Identity::Fqdn("gw.plexgate.test".into())
    );
    assert!(gw.can_use_identity(&Identity::parse("192.0.2.10").expect("ip")));
    assert!(!gw.can_use_identity(&Identity::parse("client.plexgate.test").expect("id")));

    let err = LocalCredentials::load(k.join("private/gw.pem"), k.join("x509/client.pem"))
        .expect_err("mismatch");
    assert!(matches!(err, PkiError::InFile { .. }), "{err}");
    assert!(err.to_string().contains("does not match"), "{err}");

    // A PEM bundle: our certificate followed by the intermediate.
    let dir = std::env::temp_dir().join(format!("plexgate-pki-bundle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let bundle = dir.join("bundle.pem");
    let mut text = std::fs::read(k.join("x509/p384-client.pem")).expect("read");
    text.extend(std::fs::read(k.join("x509/sub-ca.pem")).expect("read"));
    std::fs::write(&bundle, text).expect("write");
    let creds = LocalCredentials::load(k.join("private/p384-client.pem"), &bundle).expect("bundle");
    assert_eq!(creds.cert_payloads().len(), 2);
    let _ = std::fs::remove_dir_all(&dir);

    // What we send, a peer with the root CA accepts.
    let (m, d) = creds.signer.sign(OCTETS, &[2, 3, 4]).expect("sign");
    let id = creds.default_identity().expect("id");
    let payloads = creds.cert_payloads();
    let peer = PeerAuth {
        cert_payloads: &payloads,
        identity: &id,
        auth_method: m,
        auth_data: &d,
        signed_octets: OCTETS,
    };
    store(&["x509ca/ca.pem"])
        .authenticate_peer(&peer, now())
        .expect("round trip");
}
