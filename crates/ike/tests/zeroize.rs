//! Key material is wiped before its memory is freed: a global allocator looks at
//! every block freed while the check runs and counts those that still hold a marker
//! value (a PSK, Child SA keys, SK_* keys). One test only, so that no other test's
//! allocations run while the allocator is armed.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use plexgate_ike::crypto::IkeKeys;
use plexgate_ike::{ChildSa, Config, Event, Limits, Mode, TrafficSelector};

/// The PSK of the exchange below: it must appear in no freed block.
const PSK: &[u8] = b"zeroize-psk-marker-7f3a9c1e5b2d";
/// Key bytes of a hand-made Child SA / IKE SA key set.
const KEY: [u8; 24] = [
    0xa5, 0x5a, 0xc3, 0x3c, 0x96, 0x69, 0x0f, 0xf0, 0xa5, 0x5a, 0xc3, 0x3c, 0x96, 0x69, 0x0f, 0xf0,
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
];

static ARMED: AtomicBool = AtomicBool::new(false);
static FOUND: AtomicUsize = AtomicUsize::new(0);

struct Scan;

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

unsafe impl GlobalAlloc for Scan {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if ARMED.load(Ordering::Relaxed) {
            // SAFETY: the block is still ours until System.dealloc below, and every
            // byte of it was written (the test's buffers are Vec<u8> contents or
            // zeroed spare capacity), so reading it as bytes is sound.
            let block = unsafe { std::slice::from_raw_parts(p, l.size()) };
            if contains(block, PSK) || contains(block, &KEY[..16]) {
                FOUND.fetch_add(1, Ordering::Relaxed);
            }
        }
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Scan = Scan;

/// Run `f` with the allocator armed; the number of freed blocks that held a marker.
fn leaked(f: impl FnOnce()) -> usize {
    FOUND.store(0, Ordering::Relaxed);
    ARMED.store(true, Ordering::SeqCst);
    f();
    ARMED.store(false, Ordering::SeqCst);
    FOUND.load(Ordering::Relaxed)
}

fn child(key: Vec<u8>) -> ChildSa {
    ChildSa {
        name: "z".into(),
        spi_in: 0x1000,
        spi_out: 0x2000,
        protocol: 50,
        encr: 20,
        encr_key_bits: 128,
        integ: None,
        esn: false,
        keys_in: (key.clone(), Vec::new()),
        keys_out: (key, Vec::new()),
        ts_local: vec![TrafficSelector::host("10.0.0.1".parse().unwrap())],
        ts_remote: vec![TrafficSelector::host("10.0.0.2".parse().unwrap())],
        local: addr(GW),
        remote: addr(CLIENT),
        udp_encap: false,
        mode: Mode::Tunnel,
        lifetime: Duration::from_secs(60),
    }
}

#[test]
fn key_material_is_wiped_before_it_is_freed() {
    // The scanner itself finds what is not wiped.
    let plain = KEY.to_vec();
    assert_eq!(leaked(move || drop(plain)), 1, "the allocator check works");

    // A Child SA handed out in an event, and its clones.
    let c = child(KEY.to_vec());
    let copy = c.clone();
    assert_eq!(leaked(move || drop((c, copy))), 0, "Child SA keys");

    // The seven SK_* keys.
    let k = IkeKeys {
        sk_d: KEY.to_vec(),
        sk_ai: KEY.to_vec(),
        sk_ar: KEY.to_vec(),
        sk_ei: KEY.to_vec(),
        sk_er: KEY.to_vec(),
        sk_pi: KEY.to_vec(),
        sk_pr: KEY.to_vec(),
    };
    assert_eq!(leaked(move || drop(k)), 0, "SK_* keys");

    // A whole exchange with a PSK: every copy of the PSK (configs, peer lists) is
    // wiped when the endpoints and their configs go.
    let mut p = Pair::with(
        Arc::new(Config {
            peers: vec![client_cfg(PSK)],
            limits: Limits::default(),
        }),
        Arc::new(Config {
            peers: vec![gw_cfg(PSK)],
            limits: Limits::default(),
        }),
        Net::CLEAN,
        5,
    );
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    assert!(p.ev_gw.iter().any(|e| matches!(e, Event::ChildSaUp { .. })));
    assert_eq!(leaked(move || drop(p)), 0, "PSK copies");
}
