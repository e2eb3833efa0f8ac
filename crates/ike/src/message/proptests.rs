//! Property tests: the parser never panics on arbitrary or mutated input.

use super::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Arbitrary bytes never panic the parser.
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Message::parse(&data);
        let _ = Header::parse(&data);
        for first in [payload_type::SA, payload_type::TSI, payload_type::NOTIFY, payload_type::DELETE, payload_type::IDI, 99] {
            let _ = parse_payloads(first, &data);
        }
    }

    /// Real messages with a few bytes changed or cut never panic the parser, and
    /// whatever parses re-emits to bytes that parse to the same thing.
    #[test]
    fn mutated_real_messages_never_panic(
        which in 0usize..4,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut m = crate::testutil::capture_ike("gcm128-x25519", which);
        for (i, b) in flips {
            let i = i.index(m.len());
            m[i] = b;
        }
        let _ = Message::parse(&m[..cut.index(m.len() + 1)]);
        if let Ok(parsed) = Message::parse(&m) {
            let again = Message::parse(&parsed.emit());
            // Unknown transform attributes are not re-emitted; all else is.
            let lossy = parsed.payloads.iter().any(|p| matches!(p, Payload::Sa(v) if v.iter().any(|x| x.unknown_attribute)));
            if lossy {
                prop_assert!(again.is_ok());
            } else {
                prop_assert_eq!(again.map(|x| x.payloads), Ok(parsed.payloads));
            }
        }
    }
}
