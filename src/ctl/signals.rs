//! Running cleanup on SIGTERM and SIGINT: the daemon's control socket file must
//! not outlive it. A signal handler may only do async-signal-safe things, so the
//! handler writes the signal number to a pipe (`write` is safe), and a thread that
//! reads the pipe runs the cleanup as ordinary code. This works whichever thread
//! the kernel delivers the signal to, without changing any thread's signal mask.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// The write end of the pipe, for the handler (-1 until installed).
static PIPE_WR: AtomicI32 = AtomicI32::new(-1);
static INSTALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: only async-signal-safe calls: reading and restoring errno, write(2).
    unsafe {
        let errno = *libc::__errno_location();
        let fd = PIPE_WR.load(Ordering::Relaxed);
        if fd >= 0 {
            let b = sig as u8;
            let _ = libc::write(fd, (&b as *const u8).cast(), 1);
        }
        *libc::__errno_location() = errno;
    }
}

/// On the first SIGTERM or SIGINT, runs `cleanup(signal)` on a thread of its own
/// (it typically calls [`super::shutdown_all`] and exits). Installs the handlers
/// once per process; a second call is an error.
///
/// ```no_run
/// plexgate::ctl::on_termination(|sig| {
///     plexgate::ctl::shutdown_all();
///     std::process::exit(128 + sig);
/// })
/// .expect("signal handlers");
/// ```
pub fn on_termination(cleanup: impl FnOnce(i32) + Send + 'static) -> io::Result<()> {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "termination handlers are installed already",
        ));
    }
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (rd, wr) = (fds[0], fds[1]);
    PIPE_WR.store(wr, Ordering::SeqCst);
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction with a valid handler and an empty mask.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut b = 0u8;
            loop {
                // SAFETY: reading one byte into `b` from our own pipe.
                let n = unsafe { libc::read(rd, (&mut b as *mut u8).cast(), 1) };
                if n == 1 {
                    cleanup(i32::from(b));
                    return;
                }
                if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
        })?;
    Ok(())
}
