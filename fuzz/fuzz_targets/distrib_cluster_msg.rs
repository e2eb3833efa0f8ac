//! Fuzz the cluster control channel: authenticated message opening (header,
//! HMAC, replay window) and, past authentication, every body decoder.
//!   cargo fuzz run distrib_cluster_msg
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexgate_distrib::cluster::{seal_with, ClusterEndpoint, Message};
use plexgate_distrib::{ClusterKey, Distributor, DistributorConfig, NodeId};
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    let key = ClusterKey::new(b"fuzz-site-key");
    // Raw bytes through the receiver: must be refused without panicking.
    let mut rx = ClusterEndpoint::new(key.clone(), NodeId(1), 1);
    let _ = rx.open(data);
    // Body decoders directly, and re-encoding of whatever decodes.
    if let Some((&ty, body)) = data.split_first() {
        if let Ok(m) = Message::decode_body(ty % 10, body) {
            let sealed = seal_with(&key, NodeId(2), 7, &m);
            let mut rx = ClusterEndpoint::new(key.clone(), NodeId(1), 1);
            // (A ChallengeAck that answers no pending challenge is refused.)
            if !matches!(m, Message::ChallengeAck { .. }) {
                assert_eq!(rx.open(&sealed).map(|(_, m)| m), Ok(m.clone()));
            }
            // Applying an authenticated message to a gateway never panics.
            let mut d = Distributor::new(DistributorConfig::new(NodeId(1), key.clone(), 1));
            let _ = d.handle_cluster(Instant::now(), &sealed);
        }
    }
});
