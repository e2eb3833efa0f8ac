//! Running external commands with a deadline.
//!
//! The lab drives `ip`, `swanctl`, `iperf3` and friends. Every command runs in its
//! own process group with a timeout: when the deadline passes the whole group is
//! killed and [`LabError::Timeout`] is returned, so no test can hang on a tool.
//! Output is captured and put into the error when the command fails.

use crate::error::{LabError, Result};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Default deadline for short administrative commands (`ip`, `sysctl`, `swanctl`).
pub const SHORT: Duration = Duration::from_secs(20);

/// Captured result of a finished command.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl Output {
    /// stdout followed by stderr, trimmed, for error messages.
    pub fn combined(&self) -> String {
        let mut s = self.stdout.trim().to_string();
        let e = self.stderr.trim();
        if !e.is_empty() {
            if !s.is_empty() {
                s.push_str(" | ");
            }
            s.push_str(e);
        }
        s
    }
}

/// Render an argv as a shell-like command line for messages.
pub fn display(argv: &[&str]) -> String {
    argv.join(" ")
}

fn reader<R: Read + Send + 'static>(r: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            // A read error only truncates what we show; ignore it.
            let _ = r.read_to_end(&mut buf);
        }
        buf
    })
}

/// Send `sig` to the process group `pgid` (negative pid). Errors are ignored: the
/// group may already be gone.
pub(crate) fn kill_group(pgid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pgid) {
        if pid > 1 {
            // SAFETY: kill(2) has no memory-safety preconditions; a negative pid
            // addresses the process group we created with process_group(0).
            unsafe {
                libc::kill(-pid, sig);
            }
        }
    }
}

/// Wait for `child` until `deadline`; `None` if it is still running.
pub(crate) fn wait_until(child: &mut Child, deadline: Instant) -> Result<Option<ExitStatus>> {
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Ok(Some(st)),
            Ok(None) => {}
            Err(e) => return Err(LabError::io("waiting for child", e)),
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Run `argv` to completion (or until `timeout`), capturing its output. A non-zero
/// exit is *not* an error here; see [`run_ok`].
pub fn run(argv: &[&str], timeout: Duration) -> Result<Output> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| LabError::Config("empty command".into()))?;
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| LabError::io(format!("spawning `{}`", display(argv)), e))?;
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = match wait_until(&mut child, deadline)? {
        Some(st) => st,
        None => {
            kill_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
            return Err(LabError::Timeout {
                what: format!("command `{}`", display(argv)),
                after: timeout,
            });
        }
    };
    // The direct child is done; anything it left behind in its group goes too, so
    // that the pipe readers see EOF.
    kill_group(child.id(), libc::SIGKILL);
    let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Run `argv` and require exit status 0; the error carries the output.
pub fn run_ok(argv: &[&str], timeout: Duration) -> Result<Output> {
    let out = run(argv, timeout)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(LabError::Command {
            cmd: display(argv),
            status: out.status.to_string(),
            output: out.combined(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_stdout_and_status() {
        let out = run(&["sh", "-c", "echo hi; echo err >&2; exit 3"], SHORT).unwrap();
        assert_eq!(out.stdout, "hi\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.combined(), "hi | err");
    }

    #[test]
    fn run_ok_reports_failure_with_output() {
        let e = run_ok(&["sh", "-c", "echo boom >&2; exit 1"], SHORT).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("boom"), "{msg}");
        assert!(msg.contains("sh -c"), "{msg}");
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let t0 = Instant::now();
        // The grandchild `sleep` would keep the pipe open if it survived.
        let e = run(
            &["sh", "-c", "sleep 30 & sleep 30"],
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(e, LabError::Timeout { .. }), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn empty_command_is_an_error() {
        assert!(matches!(run(&[], SHORT), Err(LabError::Config(_))));
    }
}
