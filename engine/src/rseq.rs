//! rseq critical sections a dump catches a thread in. The kernel aborts a thread's
//! critical section (resumes it at the section's abort handler) the next time the thread
//! goes back to user space after being preempted, migrated or signalled, and clears the
//! area's `rseq_cs` when it finds the thread outside the section. A thread seized inside
//! one has been interrupted: it must resume at the abort handler, in the running tree as
//! after a restore. Left where it was, it would run its section to the commit with
//! `rseq_cs` cleared by the dump's own injected calls (the kernel sees the injected code
//! outside the section), or after a restore on another CPU: a commit the section's author
//! was promised could not happen. CRIU 4.2 moves such a thread to the abort handler too.
//!
//! The decision is pure: [`CriticalSection::parse`] reads the 32-byte `struct rseq_cs`
//! (uapi `linux/rseq.h`) and [`CriticalSection::resume_ip`] says where the thread goes.

/// Offset of `rseq_cs` (the pointer to the current critical section) in `struct rseq`.
pub(crate) const RSEQ_CS_FIELD_OFFSET: u64 = 8;
/// Size of `struct rseq_cs`.
pub(crate) const RSEQ_CS_SIZE: usize = 32;

/// One `struct rseq_cs`, in the host's byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CriticalSection {
    pub(crate) version: u32,
    pub(crate) flags: u32,
    pub(crate) start_ip: u64,
    pub(crate) post_commit_offset: u64,
    pub(crate) abort_ip: u64,
}

impl CriticalSection {
    /// The section described by `bytes` (`struct rseq_cs` as the target holds it).
    pub(crate) fn parse(bytes: &[u8; RSEQ_CS_SIZE]) -> CriticalSection {
        let u32_at = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_ne_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        CriticalSection { version: u32_at(0), flags: u32_at(4), start_ip: u64_at(8), post_commit_offset: u64_at(16), abort_ip: u64_at(24) }
    }

    /// Where a thread stopped at `ip` resumes: the abort handler when `ip` is inside the
    /// section, `None` when it is outside or the section is one the kernel rejects
    /// (version other than 0, a range that wraps, an abort handler inside the range:
    /// the kernel kills such a thread with SIGSEGV at its next return to user space,
    /// which crust leaves to the kernel).
    pub(crate) fn resume_ip(&self, ip: u64) -> Option<u64> {
        if self.version != 0 {
            return None;
        }
        let end = self.start_ip.checked_add(self.post_commit_offset)?;
        let inside = |at: u64| at >= self.start_ip && at < end;
        (inside(ip) && !inside(self.abort_ip)).then_some(self.abort_ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(version: u32, flags: u32, start: u64, len: u64, abort: u64) -> [u8; RSEQ_CS_SIZE] {
        let mut out = [0u8; RSEQ_CS_SIZE];
        out[0..4].copy_from_slice(&version.to_ne_bytes());
        out[4..8].copy_from_slice(&flags.to_ne_bytes());
        out[8..16].copy_from_slice(&start.to_ne_bytes());
        out[16..24].copy_from_slice(&len.to_ne_bytes());
        out[24..32].copy_from_slice(&abort.to_ne_bytes());
        out
    }

    #[test]
    fn a_thread_inside_the_section_resumes_at_its_abort_handler() {
        let cs = CriticalSection::parse(&bytes(0, 0, 0x1000, 0x20, 0x2004));
        assert_eq!(cs.start_ip, 0x1000);
        assert_eq!(cs.resume_ip(0x1000), Some(0x2004));
        assert_eq!(cs.resume_ip(0x101f), Some(0x2004));
        // The commit instruction's end (start + post_commit_offset) is outside.
        assert_eq!(cs.resume_ip(0x1020), None);
        assert_eq!(cs.resume_ip(0xfff), None);
    }

    #[test]
    fn sections_the_kernel_rejects_are_left_alone() {
        assert_eq!(CriticalSection::parse(&bytes(1, 0, 0x1000, 0x20, 0x2004)).resume_ip(0x1008), None);
        assert_eq!(CriticalSection::parse(&bytes(0, 0, u64::MAX - 4, 0x20, 0x2004)).resume_ip(u64::MAX - 2), None);
        assert_eq!(CriticalSection::parse(&bytes(0, 0, 0x1000, 0x20, 0x1010)).resume_ip(0x1008), None);
    }
}
