//! The ESP data path does not allocate: a counting global allocator around
//! `Sad::seal` and `Sad::open_in_place` for every transform (HMAC-SHA-384/512
//! included), in tunnel and transport mode, and around the drops a flood
//! causes (unknown SPI, bad ICV, replay, selector mismatch).

use plexgate_ipsec::{
    Direction, EspError, EspTransform, Lifetime, Mode, SaParams, Sad, TrafficSelector,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Counts the allocations of the threads that set [`TRACK`] (the test's own).
struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static TRACK: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if TRACK.try_with(Cell::get).unwrap_or(false) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn params(t: EspTransform, mode: Mode, dir: Direction) -> SaParams {
    let key = |n: usize, s: u8| (0..n).map(|i| s ^ i as u8).collect();
    let (us, peer) = ("198.51.100.1", "198.51.100.2");
    let (local_ts, remote_ts, local, remote) = match mode {
        Mode::Tunnel => (
            TrafficSelector::from_net("10.0.0.0/8".parse().unwrap()),
            TrafficSelector::from_net("192.168.0.0/16".parse().unwrap()),
            us,
            peer,
        ),
        Mode::Transport => (
            TrafficSelector::host(us.parse().unwrap()),
            TrafficSelector::host(peer.parse().unwrap()),
            us,
            peer,
        ),
    };
    let mut p = SaParams {
        spi: 0x7000_0001,
        direction: Direction::Inbound,
        transform: t,
        enc_key: key(t.enc_key_len(), 3),
        integ_key: key(t.integ_key_len(), 9),
        esn: true,
        mode,
        replay_window: 1024,
        lifetime: Lifetime::default(),
        local_ts: vec![local_ts],
        remote_ts: vec![remote_ts],
        local_addr: local.parse().unwrap(),
        remote_addr: remote.parse().unwrap(),
        encap: None,
        initial_seq: 0,
        peer: "p".into(),
        child: "c".into(),
    };
    if dir == Direction::Outbound {
        // The peer's outbound SA: the mirror image.
        p.direction = Direction::Outbound;
        std::mem::swap(&mut p.local_ts, &mut p.remote_ts);
        std::mem::swap(&mut p.local_addr, &mut p.remote_addr);
    }
    p
}

fn udp(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4(src, dst, 64).udp(5555, 80);
    let mut v = Vec::new();
    b.write(&mut v, &[0x5a; 100]).unwrap();
    v
}

#[test]
fn seal_open_and_drops_do_not_allocate() {
    let now = Instant::now();
    for t in EspTransform::ALL {
        for mode in [Mode::Tunnel, Mode::Transport] {
            let mut rx = Sad::new();
            rx.insert(params(t, mode, Direction::Inbound), now).unwrap();
            let mut tx = Sad::new();
            let Ok(plexgate_ipsec::SaKey::Outbound(out)) =
                tx.insert(params(t, mode, Direction::Outbound), now)
            else {
                panic!("outbound SA not installed")
            };
            let (ok, bad, nh) = match mode {
                Mode::Tunnel => (
                    udp([192, 168, 1, 1], [10, 1, 1, 1]),
                    udp([172, 16, 0, 1], [10, 1, 1, 1]),
                    4,
                ),
                Mode::Transport => (udp([0; 4], [0; 4])[20..].to_vec(), vec![], 17),
            };
            let mut bufs = vec![vec![0u8; 512]; 8];
            let mut lens = [0usize; 8];
            ALLOCS.store(0, Ordering::Relaxed);
            TRACK.with(|c| c.set(true));
            let mut results = [Ok(()); 8];
            for (i, b) in bufs.iter_mut().enumerate() {
                let inner = if i == 7 && mode == Mode::Tunnel {
                    &bad
                } else {
                    &ok
                };
                lens[i] = tx.seal(now, out, inner, nh, b).unwrap();
            }
            let (first, rest) = bufs.split_at_mut(1);
            rest[0][..lens[0]].copy_from_slice(&first[0][..lens[0]]); // a replay of packet 0
            rest[1][..4].copy_from_slice(&0x0bad_0bad_u32.to_be_bytes()); // unknown SPI
            rest[2][lens[3] - 1] ^= 1; // bad ICV
            for (i, b) in bufs.iter_mut().enumerate() {
                let n = if i == 1 { lens[0] } else { lens[i] };
                results[i] = rx.open_in_place(now, &mut b[..n]).map(|_| ());
            }
            TRACK.with(|c| c.set(false));
            assert_eq!(
                ALLOCS.load(Ordering::Relaxed),
                0,
                "{t} {mode:?}: allocations"
            );
            assert_eq!(results[0], Ok(()), "{t} {mode:?}");
            assert!(
                matches!(results[1], Err(EspError::Replay(_))),
                "{t} {mode:?}: {:?}",
                results[1]
            );
            assert_eq!(
                results[2],
                Err(EspError::UnknownSpi(0x0bad_0bad)),
                "{t} {mode:?}"
            );
            assert_eq!(results[3], Err(EspError::BadIcv), "{t} {mode:?}");
            if mode == Mode::Tunnel {
                assert_eq!(results[7], Err(EspError::SelectorMismatch), "{t} {mode:?}");
            }
        }
    }
}
