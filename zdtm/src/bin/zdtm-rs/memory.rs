//! Memory tests: anonymous private/shared memory of several sizes, private file mappings
//! with COW'd pages, shared file mappings, mprotect splits, madvise flags.
//!
//! Unsafe: mmap/mprotect/madvise and slices over the mapped ranges. Each mapping is made
//! here, sized here, and only viewed as `u64` words while mapped readable.
#![allow(unsafe_code)]

use crust_zdtm::testlib::{check_pattern, ensure, fill_pattern, pattern_word, random_u64, Test};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// The page size, read at run time: 4 KiB on most kernels, 64 KiB on Debian's ppc64el.
fn page_size() -> usize {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).ok().filter(|size| *size > 0).unwrap_or(4096)
}

/// `mmap(NULL, len, prot, flags, fd, offset)`.
#[doc(alias = "mmap")]
pub fn map(len: usize, prot: i32, flags: i32, fd: i32, offset: i64) -> Result<*mut u8, String> {
    // SAFETY: a fresh mapping at an address the kernel picks; nothing existing is replaced.
    let address = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, offset) };
    if address == libc::MAP_FAILED {
        return Err(format!(
            "mmap {len} bytes: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(address.cast())
}

/// The mapping at `address` as words.
///
/// # Safety
/// `address..address+len` must be mapped readable and writable, and not aliased by
/// another live slice.
pub unsafe fn words<'a>(address: *mut u8, len: usize) -> &'a mut [u64] {
    // SAFETY: the caller promises the range is mapped and unaliased; mmap returns
    // page-aligned addresses, so u64 alignment holds.
    unsafe { std::slice::from_raw_parts_mut(address.cast::<u64>(), len / 8) }
}

fn anon_private(test: &mut Test, len: usize) -> Result<(), String> {
    let address = map(
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    )?;
    let seed = random_u64();
    // SAFETY: just mapped RW, len bytes, only this slice uses it.
    let memory = unsafe { words(address, len) };
    fill_pattern(memory, seed);
    test.ready();
    test.wait_for_term();
    check_pattern(memory, seed)
        .map_err(|error| format!("{len} byte mapping at {address:p}: {error}"))?;
    mapped_at(address as u64, len as u64, "rw-p")
}

/// Checks /proc/self/maps has one VMA covering `[start, start+len)` with `perms`.
fn mapped_at(start: u64, len: u64, perms: &str) -> Result<(), String> {
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(|error| format!("read maps: {error}"))?;
    let entries = crust_zdtm::procfs::parse_maps(&maps).map_err(|error| error.to_string())?;
    let covering = entries
        .iter()
        .find(|entry| entry.start <= start && start + len <= entry.end);
    match covering {
        Some(entry) if entry.perms == perms => Ok(()),
        Some(entry) => Err(format!(
            "vma {:#x}-{:#x} has perms {}, expected {perms}",
            entry.start, entry.end, entry.perms
        )),
        None => Err(format!("no vma covers {start:#x}+{len:#x} after restore")),
    }
}

/// 4 KiB of private anonymous memory.
pub fn anon_4k(test: &mut Test) -> Result<(), String> {
    anon_private(test, page_size())
}

/// 64 MiB of private anonymous memory.
pub fn anon_64m(test: &mut Test) -> Result<(), String> {
    anon_private(test, 64 << 20)
}

/// 256 MiB of private anonymous memory.
pub fn anon_256m(test: &mut Test) -> Result<(), String> {
    anon_private(test, 256 << 20)
}

/// 1 GiB of private anonymous memory (`--big`).
pub fn anon_1g(test: &mut Test) -> Result<(), String> {
    anon_private(test, 1 << 30)
}

/// Writes `len` bytes of the pattern of `seed` to `path`; returns them as words and bytes.
fn write_pattern_file(path: &std::path::Path, len: usize, seed: u64) -> Result<(Vec<u64>, Vec<u8>), String> {
    let mut words = vec![0u64; len / 8];
    fill_pattern(&mut words, seed);
    let bytes: Vec<u8> = words.iter().flat_map(|word| word.to_ne_bytes()).collect();
    std::fs::write(path, &bytes).map_err(|error| format!("write {}: {error}", path.display()))?;
    Ok((words, bytes))
}

/// A private file mapping: even pages written (COW'd into anonymous pages), odd pages
/// untouched (still the file's); the file itself must stay unchanged.
pub fn private_file_cow(test: &mut Test) -> Result<(), String> {
    const PAGES: usize = 16;
    let len = PAGES * page_size();
    let path = test.path("cow.dat");
    let file_seed = random_u64();
    let (file_words, file_bytes) = write_pattern_file(&path, len, file_seed)?;
    let file =
        std::fs::File::open(&path).map_err(|error| format!("open {}: {error}", path.display()))?;
    let address = map(
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE,
        file.as_raw_fd(),
        0,
    )?;
    drop(file);
    let cow_seed = random_u64();
    for page in (0..PAGES).step_by(2) {
        // SAFETY: page lies inside the RW mapping made above.
        let page_words = unsafe { words(address.add(page * page_size()), page_size()) };
        fill_pattern(page_words, cow_seed ^ page as u64);
    }
    test.ready();
    test.wait_for_term();
    for page in 0..PAGES {
        // SAFETY: as above.
        let page_words = unsafe { words(address.add(page * page_size()), page_size()) };
        if page % 2 == 0 {
            check_pattern(page_words, cow_seed ^ page as u64)
                .map_err(|error| format!("COW'd page {page}: {error}"))?;
        } else {
            let expected = &file_words[page * page_size() / 8..(page + 1) * page_size() / 8];
            ensure(page_words == expected, || {
                format!("untouched page {page} differs from the file")
            })?;
        }
    }
    let on_disk =
        std::fs::read(&path).map_err(|error| format!("read {}: {error}", path.display()))?;
    ensure(on_disk == file_bytes, || {
        "private writes leaked into the file".into()
    })?;
    mapped_at(address as u64, len as u64, "rw-p")
}

/// A shared file mapping: written through the mapping before the dump; after restore the
/// file and the mapping still agree both ways.
pub fn shared_file(test: &mut Test) -> Result<(), String> {
    const PAGES: usize = 8;
    let len = PAGES * page_size();
    let path = test.path("shared.dat");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|error| format!("open {}: {error}", path.display()))?;
    file.set_len(len as u64)
        .map_err(|error| format!("truncate: {error}"))?;
    let address = map(
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED,
        file.as_raw_fd(),
        0,
    )?;
    drop(file);
    let seed = random_u64();
    // SAFETY: RW shared mapping of len bytes made above.
    let memory = unsafe { words(address, len) };
    fill_pattern(memory, seed);
    test.ready();
    test.wait_for_term();
    check_pattern(memory, seed).map_err(|error| format!("mapping: {error}"))?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|error| format!("reopen {}: {error}", path.display()))?;
    let mut on_disk = vec![0u8; len];
    file.read_exact_at(&mut on_disk, 0)
        .map_err(|error| format!("read file: {error}"))?;
    let memory_bytes: Vec<u8> = memory.iter().flat_map(|word| word.to_ne_bytes()).collect();
    ensure(on_disk == memory_bytes, || {
        "file content differs from the shared mapping".into()
    })?;
    // Still shared, not a private copy: a write through the file shows in the mapping
    // and a write through the mapping shows in the file.
    let marker = random_u64();
    file.write_all_at(&marker.to_ne_bytes(), page_size() as u64)
        .map_err(|error| format!("pwrite: {error}"))?;
    ensure(memory[page_size() / 8] == marker, || {
        "write to the file not seen in the mapping: mapping is not shared".into()
    })?;
    memory[0] = !marker;
    let mut first = [0u8; 8];
    file.read_exact_at(&mut first, 0)
        .map_err(|error| format!("pread: {error}"))?;
    ensure(u64::from_ne_bytes(first) == !marker, || {
        "write to the mapping not seen in the file".into()
    })?;
    mapped_at(address as u64, len as u64, "rw-s")
}

/// Shared anonymous memory (`/dev/zero (deleted)`).
pub fn shared_anon(test: &mut Test) -> Result<(), String> {
    let len = 1 << 20;
    let address = map(
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED | libc::MAP_ANONYMOUS,
        -1,
        0,
    )?;
    let seed = random_u64();
    // SAFETY: RW mapping of len bytes made above.
    let memory = unsafe { words(address, len) };
    fill_pattern(memory, seed);
    test.ready();
    test.wait_for_term();
    check_pattern(memory, seed)?;
    mapped_at(address as u64, len as u64, "rw-s")
}

/// 96 MiB of private anonymous memory in four areas of 20 MiB and more (each with more
/// than 16 MiB of pages, which crust's restore fills from outside the process,
/// `lazy/fill.rs`): read-write, read-only,
/// PROT_NONE and read-write again, every seventh page never touched. Each area keeps its
/// perms, each written page its words, each untouched page reads as zeros.
pub fn big_area_shapes(test: &mut Test) -> Result<(), String> {
    const MIB: usize = 1 << 20;
    let len = 96 * MIB;
    let address = map(len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)?;
    let page = page_size();
    let words_per_page = page / 8;
    let untouched = |index: usize| index % 7 == 3;
    let seed = random_u64();
    for index in (0..len / page).filter(|&i| !untouched(i)) {
        // SAFETY: one page inside the RW mapping made above; no other reference to it.
        let words = unsafe { std::slice::from_raw_parts_mut(address.add(index * page).cast::<u64>(), words_per_page) };
        for (at, word) in words.iter_mut().enumerate() {
            *word = pattern_word(seed, (index * words_per_page + at) as u64);
        }
    }
    // 20 MiB with every seventh page untouched is 17.1 MiB of pages: each area is over
    // the 16 MiB from which crust fills an area itself.
    let areas: &[(usize, usize, i32, &str)] = &[
        (0, 20, libc::PROT_READ | libc::PROT_WRITE, "rw-p"),
        (20, 24, libc::PROT_READ, "r--p"),
        (44, 28, libc::PROT_NONE, "---p"),
        (72, 24, libc::PROT_READ | libc::PROT_WRITE, "rw-p"),
    ];
    for &(first, mib, prot, _) in areas {
        // SAFETY: the range lies inside the mapping; no Rust reference is live over it.
        if unsafe { libc::mprotect(address.add(first * MIB).cast(), mib * MIB, prot) } != 0 {
            return Err(format!("mprotect: {}", std::io::Error::last_os_error()));
        }
    }
    test.ready();
    test.wait_for_term();
    for &(first, mib, _, perms) in areas {
        mapped_at(address as u64 + (first * MIB) as u64, (mib * MIB) as u64, perms).map_err(|error| format!("{first} MiB on: {error}"))?;
    }
    // SAFETY: inside the mapping; makes the PROT_NONE area readable to check its pages.
    if unsafe { libc::mprotect(address.add(44 * MIB).cast(), 28 * MIB, libc::PROT_READ) } != 0 {
        return Err(format!("mprotect back: {}", std::io::Error::last_os_error()));
    }
    for index in 0..len / page {
        // SAFETY: every page is readable now; the slice is only read.
        let words = unsafe { std::slice::from_raw_parts(address.add(index * page).cast::<u64>(), words_per_page) };
        for (at, &word) in words.iter().enumerate() {
            let expected = if untouched(index) { 0 } else { pattern_word(seed, (index * words_per_page + at) as u64) };
            if word != expected {
                return Err(format!("page {index} word {at}: {word:#018x}, expected {expected:#018x}"));
            }
        }
    }
    Ok(())
}

/// Ten pages split into seven VMAs by mprotect; perms and content (also of the PROT_NONE
/// page, made readable again after restore) must come back.
pub fn mprotect_split(test: &mut Test) -> Result<(), String> {
    const PAGES: usize = 10;
    let len = PAGES * page_size();
    let address = map(
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    )?;
    let seed = random_u64();
    // SAFETY: RW mapping made above.
    fill_pattern(unsafe { words(address, len) }, seed);
    let plan: &[(usize, usize, i32, &str)] = &[
        (1, 1, libc::PROT_READ, "r--p"),
        (3, 1, libc::PROT_NONE, "---p"),
        (4, 2, libc::PROT_READ | libc::PROT_EXEC, "r-xp"),
        (7, 1, libc::PROT_READ, "r--p"),
    ];
    for (first, count, prot, _) in plan {
        // SAFETY: the range lies inside our mapping; no Rust reference is live over it.
        if unsafe { libc::mprotect(address.add(first * page_size()).cast(), count * page_size(), *prot) } != 0 {
            return Err(format!("mprotect: {}", std::io::Error::last_os_error()));
        }
    }
    test.ready();
    test.wait_for_term();
    for page in 0..PAGES {
        let perms = plan
            .iter()
            .find(|(first, count, _, _)| (*first..first + count).contains(&page))
            .map(|(_, _, _, perms)| *perms)
            .unwrap_or("rw-p");
        mapped_at(address as u64 + (page * page_size()) as u64, page_size() as u64, perms)
            .map_err(|error| format!("page {page}: {error}"))?;
    }
    // SAFETY: inside our mapping; makes the PROT_NONE page readable to check its content.
    if unsafe { libc::mprotect(address.add(3 * page_size()).cast(), page_size(), libc::PROT_READ) } != 0 {
        return Err(format!(
            "mprotect back: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: every page is readable now; the slice is only read.
    let memory = unsafe { std::slice::from_raw_parts(address.cast::<u64>(), len / 8) };
    check_pattern(memory, seed)
}

/// madvise flags that show in smaps VmFlags: MADV_DONTFORK (dc), MADV_HUGEPAGE (hg),
/// MADV_NOHUGEPAGE (nh), MADV_DONTDUMP (dd).
pub fn madvise_flags(test: &mut Test) -> Result<(), String> {
    let len = 4 << 20;
    let advice: &[(i32, &str)] = &[
        (libc::MADV_DONTFORK, "dc"),
        (libc::MADV_HUGEPAGE, "hg"),
        (libc::MADV_NOHUGEPAGE, "nh"),
        (libc::MADV_DONTDUMP, "dd"),
    ];
    let mut regions = Vec::new();
    for (advice, flag) in advice {
        let address = map(
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )?;
        // SAFETY: advising our own fresh mapping.
        if unsafe { libc::madvise(address.cast(), len, *advice) } != 0 {
            return Err(format!(
                "madvise {flag}: {}",
                std::io::Error::last_os_error()
            ));
        }
        let seed = random_u64();
        // SAFETY: RW mapping made above.
        fill_pattern(unsafe { words(address, len) }, seed);
        regions.push((address, seed, *flag));
    }
    test.ready();
    test.wait_for_term();
    let smaps = std::fs::read_to_string("/proc/self/smaps")
        .map_err(|error| format!("read smaps: {error}"))?;
    let flags =
        crust_zdtm::procfs::parse_smaps_vmflags(&smaps).map_err(|error| error.to_string())?;
    for (address, seed, flag) in regions {
        let vma_flags = flags
            .get(&(address as u64))
            .ok_or_else(|| format!("no vma starts at {address:p}"))?;
        ensure(vma_flags.iter().any(|have| have == flag), || {
            format!(
                "vma {address:p} lost VmFlag {flag}: has {}",
                vma_flags.join(" ")
            )
        })?;
        // SAFETY: RW mapping made above, still mapped.
        check_pattern(unsafe { words(address, len) }, seed)
            .map_err(|error| format!("{flag} region: {error}"))?;
    }
    Ok(())
}

/// Mappings of a file that was unlinked after mmap: one shared (written through), one
/// private with COW'd pages. Content and the `(deleted)` path survive.
pub fn mapped_deleted_file(test: &mut Test) -> Result<(), String> {
    const PAGES: usize = 8;
    let len = PAGES * page_size();
    let path = test.path("mapped-then-unlinked.dat");
    let file_seed = random_u64();
    let (file_words, _) = write_pattern_file(&path, len, file_seed)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|error| format!("open {}: {error}", path.display()))?;
    let shared = map(
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED,
        file.as_raw_fd(),
        0,
    )?;
    let private = map(
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE,
        file.as_raw_fd(),
        0,
    )?;
    drop(file);
    std::fs::remove_file(&path).map_err(|error| format!("unlink: {error}"))?;
    let shared_seed = random_u64();
    // SAFETY: the first half of the RW shared mapping made above.
    fill_pattern(unsafe { words(shared, len / 2) }, shared_seed);
    let cow_seed = random_u64();
    // SAFETY: the last page of the RW private mapping made above.
    fill_pattern(unsafe { words(private.add(len - page_size()), page_size()) }, cow_seed);
    test.ready();
    test.wait_for_term();
    // SAFETY: both mappings are still mapped RW; slices are only read.
    let (shared_words, private_words) = unsafe { (words(shared, len), words(private, len)) };
    check_pattern(&shared_words[..len / 16], shared_seed)
        .map_err(|error| format!("shared half: {error}"))?;
    ensure(shared_words[len / 16..] == file_words[len / 16..], || {
        "shared mapping's untouched half differs".into()
    })?;
    check_pattern(&private_words[(len - page_size()) / 8..], cow_seed)
        .map_err(|error| format!("COW'd page: {error}"))?;
    // The private mapping sees the file, which the shared mapping wrote to.
    ensure(
        private_words[..len / 16] == shared_words[..len / 16],
        || {
            "private mapping's untouched pages do not show the shared writes: not the same file"
                .into()
        },
    )?;
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(|error| format!("read maps: {error}"))?;
    let entries = crust_zdtm::procfs::parse_maps(&maps).map_err(|error| error.to_string())?;
    for address in [shared as u64, private as u64] {
        let entry = entries
            .iter()
            .find(|entry| entry.start == address)
            .ok_or_else(|| format!("no vma at {address:#x}"))?;
        ensure(
            entry.path.ends_with("mapped-then-unlinked.dat (deleted)"),
            || format!("vma {address:#x} maps {:?}", entry.path),
        )?;
    }
    ensure(!path.exists(), || "the unlinked name came back".into())
}

/// A region moved and grown with mremap (its pages now live away from where they were
/// first mapped), and one shrunk in place.
pub fn mremap_moved(test: &mut Test) -> Result<(), String> {
    let len = 64 * page_size();
    let first = map(
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    )?;
    let seed = random_u64();
    // SAFETY: RW mapping made above.
    fill_pattern(unsafe { words(first, len) }, seed);
    // SAFETY: moves our own mapping; no Rust reference to it is live.
    let moved = unsafe { libc::mremap(first.cast(), len, 2 * len, libc::MREMAP_MAYMOVE) };
    if moved == libc::MAP_FAILED {
        return Err(format!("mremap: {}", std::io::Error::last_os_error()));
    }
    let moved: *mut u8 = moved.cast();
    let tail_seed = random_u64();
    // SAFETY: the grown second half of the moved mapping.
    fill_pattern(unsafe { words(moved.add(len), len) }, tail_seed);
    let shrunk = map(
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    )?;
    let shrunk_seed = random_u64();
    // SAFETY: RW mapping made above.
    fill_pattern(unsafe { words(shrunk, len) }, shrunk_seed);
    // SAFETY: shrinks our own mapping in place.
    if unsafe { libc::mremap(shrunk.cast(), len, len / 4, 0) } == libc::MAP_FAILED {
        return Err(format!(
            "mremap shrink: {}",
            std::io::Error::last_os_error()
        ));
    }
    test.ready();
    test.wait_for_term();
    // SAFETY: both mappings are mapped RW at these sizes.
    unsafe {
        check_pattern(words(moved, len), seed).map_err(|error| format!("moved part: {error}"))?;
        check_pattern(words(moved.add(len), len), tail_seed)
            .map_err(|error| format!("grown part: {error}"))?;
        check_pattern(words(shrunk, len / 4), shrunk_seed)
            .map_err(|error| format!("shrunk: {error}"))?;
    }
    mapped_at(moved as u64, 2 * len as u64, "rw-p")?;
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(|error| format!("read maps: {error}"))?;
    let entries = crust_zdtm::procfs::parse_maps(&maps).map_err(|error| error.to_string())?;
    let past_shrunk = shrunk as u64 + (len / 4) as u64;
    ensure(
        !entries.iter().any(|entry| {
            entry.start <= past_shrunk && past_shrunk < entry.end && entry.start > shrunk as u64
        }),
        || "the shrunk-away part is mapped again".into(),
    )
}
