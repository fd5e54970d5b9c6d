//! The Rust shell of the restorer blob, one for every host backend: the labels that
//! each backend's `global_asm!` puts around its interpreter, and the [`Host`](crate::Host)
//! methods built on them ([`host_restorer_methods`]).
//!
//! Each backend's assembly defines the same three global labels
//! (`crust_restorer_start`, `crust_restorer_syscall`, `crust_restorer_end`); only the
//! running architecture's backend is compiled, so they never clash.
//!
//! Guarantees: the blob is read only between its start and end labels, which the
//! backend's assembly puts in this binary's text: immutable and alive for the whole
//! program. The labels' addresses are taken, never read through.
#![allow(unsafe_code)]

extern "C" {
    static crust_restorer_start: u8;
    static crust_restorer_syscall: u8;
    static crust_restorer_end: u8;
}

/// (start, lone syscall instruction, end) addresses of the blob in this binary.
fn labels() -> (usize, usize, usize) {
    (
        std::ptr::addr_of!(crust_restorer_start) as usize,
        std::ptr::addr_of!(crust_restorer_syscall) as usize,
        std::ptr::addr_of!(crust_restorer_end) as usize,
    )
}

/// The blob's code, from its start label to its end label.
pub(crate) fn code() -> &'static [u8] {
    let (start, _, end) = labels();
    // SAFETY: start..end is the restorer's code in this binary's text, immutable and
    // alive for the whole program (the module's guarantee).
    unsafe { std::slice::from_raw_parts(start as *const u8, end - start) }
}

/// Offset in the blob of its lone syscall instruction.
pub(crate) fn syscall_offset() -> usize {
    let (start, syscall, _) = labels();
    syscall - start
}

/// The [`Host`](crate::Host) methods that describe the restorer blob, the same for every
/// backend: written inside each backend's `impl Host`.
macro_rules! host_restorer_methods {
    () => {
        fn restorer_blob() -> &'static [u8] {
            crate::restorer::code()
        }

        fn restorer_entry_offset() -> usize {
            0
        }

        fn restorer_syscall_offset() -> usize {
            crate::restorer::syscall_offset()
        }
    };
}
pub(crate) use host_restorer_methods;
