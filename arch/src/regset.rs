//! PTRACE_GETREGSET / PTRACE_SETREGSET, shared by every host backend.
//!
//! Guarantees: the iovec handed to the kernel points at the caller's buffer, sized by it,
//! alive for the call.
#![allow(unsafe_code)]

/// Reads regset `note` of a stopped tracee into `buf` (PTRACE_GETREGSET); returns the
/// length the kernel filled.
#[doc(alias = "PTRACE_GETREGSET")]
pub(crate) fn read_regset(tid: i32, note: libc::c_int, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: iov points at `buf`, writable for iov_len bytes, alive for the call.
    let rc = unsafe { libc::ptrace(libc::PTRACE_GETREGSET, tid, note as usize, &mut iov) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(iov.iov_len)
}

/// Writes regset `note` of a stopped tracee from `buf` (PTRACE_SETREGSET).
#[doc(alias = "PTRACE_SETREGSET")]
pub(crate) fn write_regset(tid: i32, note: libc::c_int, buf: &[u8]) -> std::io::Result<()> {
    let mut iov = libc::iovec { iov_base: buf.as_ptr() as *mut _, iov_len: buf.len() };
    // SAFETY: iov points at `buf`, readable for iov_len bytes; the kernel only reads it.
    let rc = unsafe { libc::ptrace(libc::PTRACE_SETREGSET, tid, note as usize, &mut iov) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
