//! Thin wrappers over pipe2(2) and splice(2) for zero-copy forwarding on Linux.
//!
//! Contract: [`pipe`] returns an owned non-blocking pipe; [`splice`] moves up to `len` bytes
//! between two descriptors without blocking (`WouldBlock` when the socket side is not ready).
//!
//! This is the one module that may use `unsafe`: neither std, tokio nor socket2 expose
//! splice(2)/pipe2(2), and the calls need raw descriptors. Each block states why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Both ends of a pipe, closed on drop.
#[derive(Debug)]
pub(crate) struct Pipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
}

/// Capacity asked for each pipe: the most one splice(2) call moves. Only bytes in flight occupy
/// it; an empty pooled pipe holds no data pages.
pub(crate) const PIPE_SIZE: usize = 1 << 20;

pub(crate) fn pipe() -> io::Result<Pipe> {
    let mut fds: [libc::c_int; 2] = [-1, -1];
    // SAFETY: `fds` is a valid, writable array of two c_int, which is what pipe2(2) fills.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success both descriptors are freshly opened and owned by no one else, so
    // transferring their ownership into `OwnedFd` (closed exactly once, on drop) is sound.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: F_SETPIPE_SZ takes an int argument and touches no memory of ours; `write` is open.
    // A refusal (over /proc/sys/fs/pipe-max-size or the per-user pipe quota) keeps the default.
    let _ = unsafe {
        libc::fcntl(
            write.as_raw_fd(),
            libc::F_SETPIPE_SZ,
            PIPE_SIZE as libc::c_int,
        )
    };
    Ok(Pipe { read, write })
}

/// splice(2) with no offsets, `SPLICE_F_MOVE | SPLICE_F_NONBLOCK`.
pub(crate) fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are borrowed and therefore open for the duration of the call;
    // null offset pointers are what splice(2) expects for pipes and sockets; no memory of ours is
    // read or written by the kernel.
    let n = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}
