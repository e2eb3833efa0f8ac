//! Key material is wiped when an SA goes: a global allocator that, while armed,
//! looks into every block freed for the key bytes of the SA. Dropping an SA
//! (and the SAD removing one) must free no block that still holds its keys.
//! The keys are patterns that appear nowhere else in the process.
//!
//! Known limits, asserted as such so that a change shows: ring keeps the AEAD
//! key schedule inline in the SA (a table of SAs that is freed still holds it;
//! ring offers no way to wipe it), and the `aes` crate's key types (AES-CBC)
//! are unions of an AES-NI and a software schedule of which only the half in
//! use is zeroized: the other half carries stack residue of the key expansion
//! into the cipher's box, raw key bytes among it. See
//! `crates/ipsec/src/cipher.rs`.

use plexgate_ipsec::{Direction, EspTransform, Lifetime, Mode, SaParams, Sad, SecurityAssociation};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

struct Snooping;

static ARMED: AtomicBool = AtomicBool::new(false);
/// Freed blocks of at most 64 bytes (key `Vec`s) that held key bytes.
static FOUND: AtomicUsize = AtomicUsize::new(0);
/// Larger freed blocks (cipher state) that held key bytes.
static FOUND_LARGE: AtomicUsize = AtomicUsize::new(0);
static FREED: AtomicUsize = AtomicUsize::new(0);
/// The 16-byte needle looked for (set before arming).
static NEEDLES: Mutex<Vec<[u8; 16]>> = Mutex::new(Vec::new());
/// One test at a time (the allocator is global).
static SERIAL: Mutex<()> = Mutex::new(());

std::thread_local! {
    static IN_CHECK: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

unsafe impl GlobalAlloc for Snooping {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::SeqCst) && !IN_CHECK.with(|c| c.replace(true)) {
            // SAFETY: the block is still allocated and `layout.size()` long.
            let block = unsafe { core::slice::from_raw_parts(ptr, layout.size()) };
            FREED.fetch_add(1, Ordering::SeqCst);
            if let Ok(needles) = NEEDLES.try_lock() {
                if needles
                    .iter()
                    .any(|n| block.windows(n.len()).any(|w| w == n))
                {
                    if layout.size() <= 64 {
                        FOUND.fetch_add(1, Ordering::SeqCst);
                    } else {
                        FOUND_LARGE.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            IN_CHECK.with(|c| c.set(false));
        }
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Snooping = Snooping;

/// A key of `n` bytes whose every 16-byte window is unlike anything else here.
fn key(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| seed ^ 0x5a ^ (i as u8).wrapping_mul(37).wrapping_add(0x11))
        .collect()
}

fn params(t: EspTransform, spi: u32, dir: Direction) -> SaParams {
    SaParams {
        spi,
        direction: dir,
        transform: t,
        enc_key: key(t.enc_key_len(), 0xc3),
        integ_key: key(t.integ_key_len(), 0x3c),
        esn: false,
        mode: Mode::Tunnel,
        replay_window: 1024,
        lifetime: Lifetime::default(),
        local_ts: vec![],
        remote_ts: vec![],
        local_addr: "10.0.0.1".parse().unwrap(),
        remote_addr: "10.0.0.2".parse().unwrap(),
        encap: None,
        initial_seq: 0,
        peer: "p".into(),
        child: "c".into(),
    }
}

fn arm(p: &SaParams) {
    let mut n = NEEDLES.lock().unwrap();
    n.clear();
    let mut a = [0u8; 16];
    a.copy_from_slice(&p.enc_key[..16]);
    n.push(a);
    if p.integ_key.len() >= 16 {
        a.copy_from_slice(&p.integ_key[..16]);
        n.push(a);
    }
    drop(n);
    FOUND.store(0, Ordering::SeqCst);
    FOUND_LARGE.store(0, Ordering::SeqCst);
    FREED.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
}

/// (small blocks with key bytes, large blocks with key bytes, blocks freed).
fn disarm() -> (usize, usize, usize) {
    ARMED.store(false, Ordering::SeqCst);
    (
        FOUND.load(Ordering::SeqCst),
        FOUND_LARGE.load(Ordering::SeqCst),
        FREED.load(Ordering::SeqCst),
    )
}

#[test]
fn dropped_sa_frees_no_key_bytes() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for t in EspTransform::ALL {
        let p = params(t, 0x1000, Direction::Inbound);
        arm(&p);
        let sa = SecurityAssociation::new(p, Instant::now()).unwrap();
        drop(sa);
        let (found, large, freed) = disarm();
        assert!(
            freed >= 2,
            "{t}: the keys' blocks were freed ({freed} blocks)"
        );
        assert_eq!(
            found, 0,
            "{t}: {found} freed key buffers still held key bytes"
        );
        // AEAD: no other block; CBC: at most the cipher's box (see above).
        let allowed = usize::from(!t.is_aead());
        assert!(
            large <= allowed,
            "{t}: {large} freed cipher blocks held key bytes"
        );
    }
}

#[test]
fn sad_removal_and_copies_free_no_key_bytes() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for t in EspTransform::ALL {
        let now = Instant::now();
        let mut sad = Sad::new();
        let p = params(t, 0x2000, Direction::Inbound);
        arm(&p);
        let copy = p.clone();
        sad.insert(p, now).unwrap();
        drop(copy);
        let removed = sad.remove(plexgate_ipsec::SaKey::Inbound(0x2000));
        assert!(removed.is_some());
        drop(removed);
        drop(sad);
        let (found, _large, freed) = disarm();
        assert!(freed >= 4, "{t}: {freed} blocks freed");
        // The key buffers of the SA and of the copy are wiped. Larger blocks
        // (the SAD's table, with ring's AEAD schedule inline or, for CBC,
        // uninitialised bytes of the cipher enum moved along with the SA; the
        // CBC cipher's box) can still hold key bytes: see the module doc.
        assert_eq!(
            found, 0,
            "{t}: {found} freed key buffers still held key bytes"
        );
    }
}

/// The test can fail: a copy of the key in a plain `Vec` that is dropped is seen.
#[test]
fn the_snooper_sees_a_plain_key() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = params(
        EspTransform::AesCbc128HmacSha256,
        0x3000,
        Direction::Inbound,
    );
    arm(&p);
    let plain: Vec<u8> = p.enc_key.clone();
    drop(plain);
    let (found, _, _) = disarm();
    assert_eq!(found, 1);
}
