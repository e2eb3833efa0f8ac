//! Identities (RFC 7296 §3.5): configuration strings, ID payload bytes, Display.

mod common;
use common::*;

use std::net::{Ipv4Addr, Ipv6Addr};

use plexgate_pki::{id_type, DistinguishedName, Identity};

fn id(s: &str) -> Identity {
    Identity::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn strongswan_string_conventions() {
    assert_eq!(id("gw@example"), Identity::Rfc822("gw@example".into()));
    assert_eq!(
        id("gw.plexgate.test"),
        Identity::Fqdn("gw.plexgate.test".into())
    );
    assert_eq!(
        id("@gw.plexgate.test"),
        Identity::Fqdn("gw.plexgate.test".into())
    );
    assert_eq!(id("@@user"), Identity::Fqdn("@user".into()));
    assert_eq!(id("192.0.2.1"), Identity::Ipv4(Ipv4Addr::new(192, 0, 2, 1)));
    assert_eq!(
        id("2001:db8::1"),
        Identity::Ipv6("2001:db8::1".parse().expect("v6"))
    );
    assert_eq!(id("@#0a0b0c"), Identity::KeyId(vec![10, 11, 12]));
    assert_eq!(id("keyid:#ff"), Identity::KeyId(vec![255]));
    assert_eq!(id("fqdn:192.0.2.1"), Identity::Fqdn("192.0.2.1".into()));
    assert_eq!(id("email:foo"), Identity::Rfc822("foo".into()));
    assert_eq!(
        id("ipv4:10.0.0.1"),
        Identity::Ipv4(Ipv4Addr::new(10, 0, 0, 1))
    );
    let dn = id("C=CH, O=plexgate, CN=gw.example");
    assert_eq!(dn.id_type(), id_type::ID_DER_ASN1_DN);
    assert_eq!(dn.to_string(), "C=CH, O=plexgate, CN=gw.example");
}

#[test]
fn bad_strings_are_errors() {
    for bad in [
        "",
        "   ",
        "%any",
        "has space",
        "@#abc",
        "@#zz",
        "C=CH, XX=y",
        "CN=",
        "O=\"open",
    ] {
        let err = Identity::parse(bad).expect_err(bad);
        assert!(err.to_string().contains("bad identity"), "{err}");
    }
}

#[test]
fn payload_bytes_each_type() {
    // ID Type | RESERVED (3 octets, zero) | Identification Data (RFC 7296 §3.5)
    let cases: [(&str, &str); 6] = [
        ("192.0.2.1", "01000000c0000201"),
        ("gw.x", "0200000067772e78"),
        ("a@b", "03000000614062"),
        ("2001:db8::1", "0500000020010db8000000000000000000000001"),
        ("CN=a", "09000000300c310a30080603550403130161"),
        ("@#c0ffee", "0b000000c0ffee"),
    ];
    for (s, want) in cases {
        let want = hex::decode(want.replace(' ', "")).expect("hex");
        let identity = id(s);
        assert_eq!(identity.to_payload_body(), want, "{s}");
        assert_eq!(
            Identity::from_payload_body(&want).expect("decodes"),
            identity,
            "{s}"
        );
        // Display reads back.
        assert_eq!(id(&identity.to_string()), identity, "{s}");
    }
}

#[test]
fn reserved_octets_ignored_on_receipt_and_bad_payloads_refused() {
    let id1 =
        Identity::from_payload_body(&hex::decode("01ffffffc0000201").expect("hex")).expect("ok");
    assert_eq!(id1, Identity::Ipv4(Ipv4Addr::new(192, 0, 2, 1)));
    for bad in [
        "01000000c00002",
        "05000000c0000201",
        "020000",
        "02000000",
        "0900000030",
        "04000000aa",
        "0b000000",
        "02000000ff",
    ] {
        let bytes = hex::decode(bad).expect("hex");
        assert!(Identity::from_payload_body(&bytes).is_err(), "{bad}");
    }
    let v6 = Identity::from_type_and_data(5, &[0; 16]).expect("v6");
    assert_eq!(v6, Identity::Ipv6(Ipv6Addr::UNSPECIFIED));
}

#[test]
fn dn_from_string_equals_strongswan_certificate_subject_der() {
    // strongSwan's pki encoded these subjects as PrintableStrings, as we do.
    for file in ["x509/gw.pem", "x509/client.pem", "x509ca/ca.pem"] {
        let c = cert(file);
        let subject = c.subject().expect("subject");
        let parsed = DistinguishedName::parse(&subject.to_string()).expect("parses");
        assert_eq!(parsed.der(), subject.der(), "{file}");
    }
}

#[test]
fn dn_quoting_escaping_and_normalised_match() {
    let a = DistinguishedName::parse("O=\"Example, Inc.\", CN=x").expect("quoted");
    let b = DistinguishedName::parse("O=Example\\, Inc., CN=x").expect("escaped");
    assert_eq!(a, b);
    assert_eq!(a.to_string(), "O=\"Example, Inc.\", CN=x");
    assert_eq!(
        DistinguishedName::parse(&a.to_string()).expect("round trip"),
        a
    );
    // UTF8String vs PrintableString, case and spacing differences still match.
    let utf8 = DistinguishedName::parse("CN=Zürich Gateway").expect("utf8");
    assert_eq!(
        utf8.der()[11],
        0x0c,
        "UTF8String for non-printable characters"
    );
    assert!(utf8.matches(&DistinguishedName::parse("cn=  zürich   gateway ").expect("utf8")));
    assert!(!utf8.matches(&DistinguishedName::parse("CN=Zurich Gateway").expect("ascii")));
    // Order of RDNs matters.
    let x = DistinguishedName::parse("C=CH, CN=a").expect("dn");
    let y = DistinguishedName::parse("CN=a, C=CH").expect("dn");
    assert!(!x.matches(&y));
    // E (emailAddress) is an IA5String and prints as E=.
    let e = DistinguishedName::parse("emailAddress=a@b, CN=x").expect("dn");
    assert_eq!(e.to_string(), "E=a@b, CN=x");
}
