//! UDP segmentation offload on a path whose MTU is below the segment size: the
//! kernel refuses the GSO send, and the batch falls back to sending every
//! datagram on its own (fragmented by the kernel), so nothing is lost; smaller
//! datagrams are still sent in GSO groups.
//! Runs in a namespace of its own whose `lo` MTU is lowered.

use std::time::Duration;

use plexgate::io::net::{enable_udp_gro, fd_of, udp_socket, RecvBatch, UdpSendBatch};
use plexgate_lab::Netns;

#[test]
fn gso_refused_on_a_small_mtu_falls_back_to_single_datagrams() {
    let ns = Netns::new("udp-gso-mtu").expect("namespace (needs root)");
    ns.ip(&["link", "set", "dev", "lo", "mtu", "1200"]).unwrap();
    let (got, gso_after) = ns
        .run_in(|| {
            let rx = udp_socket("127.0.0.1:0".parse().unwrap()).unwrap();
            assert!(enable_udp_gro(&rx));
            let to = rx.local_addr().unwrap().as_socket().unwrap();
            let tx = udp_socket("127.0.0.1:0".parse().unwrap()).unwrap();
            let mut sb = UdpSendBatch::new();
            for i in 0..10u8 {
                sb.push(&tx, &[i; 1400], to);
            }
            sb.flush(&tx);
            let gso_after = (sb.gso_enabled_for(1400), sb.gso_enabled_for(1000));
            // Smaller datagrams are still grouped, and arrive intact.
            for i in 0..10u8 {
                sb.push(&tx, &[i + 100; 1000], to);
            }
            sb.flush(&tx);
            rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut b = RecvBatch::for_gro();
            let mut got = Vec::new();
            while got.len() < 20 {
                let n = b.recv(fd_of(&rx)).unwrap();
                if n == 0 {
                    break;
                }
                for i in 0..n {
                    let segs: Vec<_> = b.segments(i).collect();
                    let (buf, _, _) = b.slot_mut(i);
                    for (at, len) in segs {
                        got.push(buf[at..at + len].to_vec());
                    }
                }
            }
            (got, gso_after)
        })
        .unwrap();
    assert_eq!(
        gso_after,
        (false, true),
        "a 1400-byte segment on a 1200-byte MTU must be refused, 1000 bytes not"
    );
    let want: Vec<Vec<u8>> = (0..10u8)
        .map(|i| vec![i; 1400])
        .chain((0..10u8).map(|i| vec![i + 100; 1000]))
        .collect();
    assert_eq!(got, want);
}
