//! Memory requests: mappings crust makes for a restored process (the restorer area, the
//! premap arena and its slots, shared anonymous objects) and reading another process's
//! memory; moving pages between pipes and files.
//!
//! Through nix: mmap, munmap, mprotect, madvise, process_vm_readv, splice.
//! nix's mman functions are `unsafe` (they change what memory is
//! mapped), so each call keeps a `// SAFETY:` line saying why no Rust value refers to
//! the memory. Own code: copying bytes to, and a slice over, an address crust mapped.
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{self, IoSliceMut};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;

use nix::fcntl::{splice, SpliceFFlags};
use nix::sys::mman::{self, MapFlags, MmapAdvise, ProtFlags};
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;

fn length(len: usize) -> io::Result<NonZeroUsize> {
    NonZeroUsize::new(len).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
}

fn address(addr: u64) -> io::Result<NonNull<libc::c_void>> {
    NonNull::new(addr as *mut libc::c_void).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `mmap(addr, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE)`.
#[doc(alias = "mmap")]
pub fn map_anonymous_at(addr: u64, len: usize, prot: i32) -> io::Result<()> {
    let at = NonZeroUsize::new(addr as usize);
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping, so no memory this
    // program uses can change under it.
    let ptr = unsafe {
        mman::mmap_anonymous(at, length(len)?, ProtFlags::from_bits_retain(prot), MapFlags::MAP_PRIVATE | MapFlags::MAP_FIXED_NOREPLACE)
    }?;
    if ptr.as_ptr() as u64 != addr {
        return Err(io::Error::new(io::ErrorKind::AddrInUse, "mapping landed elsewhere"));
    }
    Ok(())
}

/// Copies `bytes` to `addr` in this process, a range mapped writable by
/// [`map_anonymous_at`].
///
/// # Safety
/// `addr..addr+bytes.len()` must be a writable mapping that nothing else refers to.
pub unsafe fn copy_to_address(addr: u64, bytes: &[u8]) {
    // SAFETY: guaranteed by the caller.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len()) }
}

/// Reserves `addr..addr+len` (inaccessible, no memory behind it) so that nothing else
/// is mapped there; never over an existing mapping.
#[doc(alias = "mmap")]
pub fn reserve_at(addr: u64, len: usize) -> io::Result<()> {
    let flags = MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE | MapFlags::MAP_FIXED_NOREPLACE;
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping, so no memory this
    // program uses can change under it.
    let ptr = unsafe { mman::mmap_anonymous(NonZeroUsize::new(addr as usize), length(len)?, ProtFlags::PROT_NONE, flags) }?;
    if ptr.as_ptr() as u64 != addr {
        // SAFETY: ptr..ptr+len was just mapped by this call and nothing refers to it.
        let _ = unsafe { mman::munmap(ptr, len) };
        return Err(io::Error::from_raw_os_error(libc::EEXIST));
    }
    Ok(())
}

/// Drops a reservation made by [`reserve_at`].
#[doc(alias = "munmap")]
pub fn release_reservation(addr: u64, len: usize) {
    if let Ok(at) = address(addr) {
        // SAFETY: the range is a PROT_NONE reservation of this program that nothing uses.
        let _ = unsafe { mman::munmap(at, len) };
    }
}

/// Maps private anonymous read-write memory at exactly `addr`, over (part of) a
/// reservation made by [`reserve_at`] (inherited through fork).
#[doc(alias = "mmap")]
pub fn map_private_anon_over_reservation(addr: u64, len: usize, noreserve: bool) -> io::Result<()> {
    let mut flags = MapFlags::MAP_PRIVATE | MapFlags::MAP_FIXED;
    if noreserve {
        flags |= MapFlags::MAP_NORESERVE;
    }
    // SAFETY: the caller names a range of the premap reservation, which holds no memory
    // anything in this program refers to; MAP_FIXED replaces only that.
    unsafe { mman::mmap_anonymous(NonZeroUsize::new(addr as usize), length(len)?, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, flags) }?;
    Ok(())
}

/// Maps `len` bytes of the file open at fd number `fd`, from byte `offset`, private and
/// read-write at exactly `addr`, over (part of) a reservation made by [`reserve_at`]
/// (inherited through fork): pages not written read through to the file.
#[doc(alias = "mmap")]
pub fn map_private_file_over_reservation(addr: u64, len: usize, fd: i32, offset: u64, noreserve: bool) -> io::Result<()> {
    let mut flags = MapFlags::MAP_PRIVATE | MapFlags::MAP_FIXED;
    if noreserve {
        flags |= MapFlags::MAP_NORESERVE;
    }
    // SAFETY: `fd` is an open fd number of this process for the duration of the call.
    let file = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    // SAFETY: the caller names a range of the premap reservation, which holds no memory
    // anything in this program refers to; MAP_FIXED replaces only that.
    unsafe {
        mman::mmap(
            NonZeroUsize::new(addr as usize),
            length(len)?,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            flags,
            file,
            offset as libc::off_t,
        )
    }?;
    Ok(())
}

/// `madvise(addr, len, advice)` on memory this program mapped for a restored process.
#[doc(alias = "madvise")]
pub fn advise(addr: u64, len: usize, advice: MmapAdvise) -> io::Result<()> {
    // SAFETY: the advice applies to the restored process's memory crust mapped (premap
    // slots), which no Rust value refers to.
    Ok(unsafe { mman::madvise(address(addr)?, len, advice) }?)
}

/// The `len` bytes at `addr` as a slice.
///
/// # Safety
/// `addr..addr+len` must be mapped readable and writable in this process for as long as
/// the slice lives, and nothing else may access it meanwhile.
pub unsafe fn memory_at(addr: u64, len: usize) -> &'static mut [u8] {
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len) }
}

/// `mprotect(addr, len, prot)` of a range this program mapped for itself.
#[doc(alias = "mprotect")]
pub fn protect(addr: u64, len: usize, prot: i32) -> io::Result<()> {
    // SAFETY: only changes protections of a range this program mapped for itself (the
    // restorer area), which no Rust value refers to.
    Ok(unsafe { mman::mprotect(address(addr)?, len, ProtFlags::from_bits_retain(prot)) }?)
}

/// Gives the pages of freed heap memory back to the kernel (`malloc_trim(0)`: glibc
/// keeps them otherwise), so that a fork does not copy their page table entries.
pub fn release_free_heap() {
    // SAFETY: malloc_trim only returns memory malloc holds free; no Rust value refers to it.
    unsafe { libc::malloc_trim(0) };
}

/// Bytes kept in a shared anonymous mapping (MAP_SHARED|MAP_ANONYMOUS) of their own: a
/// fork copies none of its page table entries (a child that reads it faults them in),
/// so a restored process that never reads them costs nothing for them. Read-only once
/// made; unmapped on drop.
pub struct SharedBytes {
    ptr: NonNull<libc::c_void>,
    len: usize,
}

// SAFETY: the mapping is written once, in `copy_of`, before the value exists; after
// that it is only read, from any thread.
unsafe impl Send for SharedBytes {}
// SAFETY: as above, no shared mutation.
unsafe impl Sync for SharedBytes {}

impl SharedBytes {
    /// A new mapping holding `parts` one after the other.
    #[doc(alias = "mmap")]
    pub fn copy_of(parts: &[&[u8]]) -> io::Result<SharedBytes> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        // SAFETY: a fresh mapping at an address the kernel picks; nothing else uses it.
        let ptr = unsafe { mman::mmap_anonymous(None, length(len.max(1))?, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED) }?;
        let mut at = 0;
        for part in parts {
            // SAFETY: the mapping is len bytes long and writable, and the parts sum to len.
            unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), (ptr.as_ptr() as *mut u8).add(at), part.len()) };
            at += part.len();
        }
        Ok(SharedBytes { ptr, len })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len is mapped readable for the life of self and never written
        // after `copy_of`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr() as *const u8, self.len) }
    }

    /// The addresses the mapping takes: [start, end), whole pages.
    pub fn range(&self) -> (u64, u64) {
        let start = self.ptr.as_ptr() as u64;
        (start, start + (self.len.max(1) as u64).div_ceil(super::page_size()) * super::page_size())
    }
}

impl Drop for SharedBytes {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `copy_of` made; the slices `as_slice` lent
        // borrow self, so none outlives it.
        let _ = unsafe { mman::munmap(self.ptr, self.len.max(1)) };
    }
}

/// A new shared anonymous memory object of `size` bytes, as an fd: mapped
/// MAP_SHARED|MAP_ANONYMOUS, reopened through /proc/self/map_files (so areas mapped from
/// it show as `/dev/zero (deleted)` like the original), then unmapped.
pub fn create_shared_anon(size: u64) -> io::Result<std::fs::File> {
    let len = size.max(1) as usize;
    // SAFETY: a fresh mapping at an address the kernel picks; nothing else uses it.
    let ptr = unsafe { mman::mmap_anonymous(None, length(len)?, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED) }?;
    let start = ptr.as_ptr() as u64;
    let page = super::page_size();
    let end = start + (len as u64).div_ceil(page) * page;
    let opened = std::fs::OpenOptions::new().read(true).write(true).open(format!("/proc/self/map_files/{start:x}-{end:x}"));
    // SAFETY: unmaps exactly the mapping made above, which nothing refers to.
    let _ = unsafe { mman::munmap(ptr, len) };
    opened
}

/// `process_vm_readv(pid, [local], [addr..addr+len])`: bytes read, which is short when a
/// page in the range cannot be read.
#[doc(alias = "process_vm_readv")]
pub fn read_remote(pid: i32, local: &mut [u8], addr: u64) -> io::Result<usize> {
    let mut total = 0usize;
    while total < local.len() {
        let rest = &mut local[total..];
        let remote = [RemoteIoVec { base: (addr + total as u64) as usize, len: rest.len() }];
        match process_vm_readv(Pid::from_raw(pid), &mut [IoSliceMut::new(rest)], &remote) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(error) if total > 0 => {
                let _ = error;
                return Ok(total);
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(total)
}

/// `splice(pipe, NULL, out, NULL, len, SPLICE_F_MOVE)`: bytes moved from the pipe to the
/// file at its position.
#[doc(alias = "splice")]
pub fn splice_to_file(pipe: &OwnedFd, out: &File, len: usize) -> io::Result<usize> {
    loop {
        match splice(pipe.as_fd(), None, out.as_fd(), None, len, SpliceFFlags::SPLICE_F_MOVE) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => return Ok(other?),
        }
    }
}

