//! Images hold process memory, credentials and file contents: crust creates an images
//! directory 0700 and every image 0600 (an image that was there before is made 0600
//! too), and refuses to dump into a directory that another user can write, where files
//! could be swapped or links planted under crust's feet.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of an images directory crust creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every image.
pub const FILE_MODE: u32 = 0o600;

/// Creates `path` and its missing parents, each 0700 (less the umask).
pub fn create_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(path)
}

/// Why a directory cannot hold images.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("{}: {source}", path.display())]
    Io { path: std::path::PathBuf, source: io::Error },
    #[error("{}: others can write to it (mode {mode:o}); images hold process memory: use a directory only its owner can write", path.display())]
    WritableByOthers { path: std::path::PathBuf, mode: u32 },
    #[error("{}: owned by uid {owner}, not by this user ({own}) or root; images hold process memory: use a directory of your own", path.display())]
    Foreign { path: std::path::PathBuf, owner: u32, own: u32 },
}

/// Refuses a directory that someone other than its owner can write (group or others,
/// unless only root and this user are that), or that another user owns.
pub fn check_dir(path: &Path) -> Result<(), DirError> {
    let metadata = fs::metadata(path).map_err(|source| DirError::Io { path: path.to_path_buf(), source })?;
    let mode = metadata.mode() & 0o7777;
    let own = nix::unistd::geteuid().as_raw();
    if metadata.uid() != own && metadata.uid() != 0 {
        return Err(DirError::Foreign { path: path.to_path_buf(), owner: metadata.uid(), own });
    }
    if mode & 0o002 != 0 || (mode & 0o020 != 0 && metadata.gid() != nix::unistd::getegid().as_raw()) {
        return Err(DirError::WritableByOthers { path: path.to_path_buf(), mode });
    }
    Ok(())
}

/// Removes the images an earlier dump left in `dir` (files named as CRIU names images,
/// and crust's checksums), so that the new dump's image set is its own: a stale
/// `pagemap-OLDPID.img` would point into the new `pages-1.img`. Logs, the `parent`
/// link and anything else are left. Returns how many were removed.
pub fn remove_earlier_images(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        let is_image = name == crust_images::checksums::CHECKSUMS_FILE || crust_images::ImageKind::from_file_name(&name).is_some();
        if is_image && entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Creates (or truncates) the image `path`, 0600, for writing: a spare file of its
/// directory named `path` when [`Spares`] has one ready, else a new file.
pub fn create_file(path: &Path) -> io::Result<File> {
    if let Some(file) = path.parent().and_then(spares::take) {
        match crate::sys::file::link_unnamed(&file, path) {
            Ok(()) => return Ok(file),
            Err(error) => log::debug!("{}: spare file not linked ({error}), created instead", path.display()),
        }
    }
    let file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(FILE_MODE).open(path)?;
    if file.metadata()?.mode() & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    }
    Ok(file)
}

/// Creates the image of `kind` and `id` in `dir` (0600), through [`create_file`].
pub fn create_image(dir: &Path, kind: crust_images::ImageKind, id: u64) -> Result<crust_images::ImageWriter, crust_images::ImageError> {
    create_image_path(&dir.join(kind.file_name(id)), kind)
}

/// Creates the image at `path` (0600), through [`create_file`].
pub fn create_image_path(path: &Path, kind: crust_images::ImageKind) -> Result<crust_images::ImageWriter, crust_images::ImageError> {
    let file = create_file(path).map_err(|source| crust_images::ImageError::WriteFile { path: path.to_owned(), source })?;
    crust_images::ImageWriter::from_file(file, path, kind)
}

pub use spares::Spares;

/// Spare image files: a dump writes some 7 files per process, and making a file's inode
/// is most of what writing a small image costs (ext4 without a journal, as on this
/// project's machines, passes over every inode of the group freed in the last 30 s: 0.2-0.5
/// ms a file after an earlier dump of the same tree was removed). A thread makes unnamed
/// files (O_TMPFILE) in the images directory from the start of the dump, beside the
/// freeze and the parasites, and [`create_file`] names one (linkat) instead of making
/// an inode while the tree is frozen. Spares left at the end are closed, and vanish.
mod spares {
    use std::fs::File;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Condvar, Mutex};

    #[derive(Default)]
    struct Pool {
        dir: PathBuf,
        ready: Vec<File>,
        /// Files made so far, and how many the dump is expected to write.
        made: usize,
        wanted: usize,
        stop: bool,
    }

    type Shared = Arc<(Mutex<Pool>, Condvar)>;

    /// The pool of the running dump (one at a time).
    static ACTIVE: Mutex<Option<Shared>> = Mutex::new(None);

    /// The making thread of a dump's spare files; dropping it stops the thread and closes
    /// the spares nobody took.
    pub struct Spares {
        shared: Shared,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Spares {
        /// Starts making up to `wanted` spare files in `dir`. `None` when another dump
        /// of this process has a pool, or no thread can start (then files are made as
        /// they are needed, as without spares).
        pub fn start(dir: &Path, wanted: usize) -> Option<Spares> {
            let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
            if active.is_some() {
                return None;
            }
            let shared: Shared = Arc::new((Mutex::new(Pool { dir: dir.to_path_buf(), wanted, ..Default::default() }), Condvar::new()));
            let maker = Arc::clone(&shared);
            let thread = std::thread::Builder::new().name("crust-spares".into()).spawn(move || make(&maker)).ok()?;
            *active = Some(Arc::clone(&shared));
            Some(Spares { shared, thread: Some(thread) })
        }

        /// Raises the number of files the dump is expected to write to `wanted`.
        pub fn want(&self, wanted: usize) {
            let (pool, more) = &*self.shared;
            let mut pool = pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.wanted = pool.wanted.max(wanted);
            more.notify_one();
        }
    }

    #[cfg(test)]
    impl Spares {
        /// Waits until `count` files were made (or the maker gave up).
        pub fn wait_made(&self, count: usize) -> usize {
            let (pool, more) = &*self.shared;
            let mut guard = pool.lock().unwrap();
            while guard.made < count && !self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                guard = more.wait_timeout(guard, std::time::Duration::from_millis(100)).unwrap().0;
            }
            guard.made
        }

        /// Spares made and not taken.
        pub fn ready(&self) -> usize {
            self.shared.0.lock().unwrap().ready.len()
        }
    }

    impl Drop for Spares {
        fn drop(&mut self) {
            *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let (pool, more) = &*self.shared;
            let (made, left) = {
                let mut pool = pool.lock().unwrap_or_else(|e| e.into_inner());
                pool.stop = true;
                more.notify_one();
                (pool.made, std::mem::take(&mut pool.ready).len())
            };
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
            log::debug!("spare image files: {made} made, {} used", made.saturating_sub(left));
        }
    }

    fn make(shared: &Shared) {
        let (pool, more) = &**shared;
        let dir = pool.lock().unwrap_or_else(|e| e.into_inner()).dir.clone();
        loop {
            {
                let mut guard = pool.lock().unwrap_or_else(|e| e.into_inner());
                while !guard.stop && guard.made >= guard.wanted {
                    guard = more.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
                if guard.stop {
                    return;
                }
            }
            match crate::sys::file::create_unnamed(&dir, super::FILE_MODE) {
                Ok(file) => {
                    let mut guard = pool.lock().unwrap_or_else(|e| e.into_inner());
                    guard.made += 1;
                    guard.ready.push(file);
                    more.notify_all();
                }
                Err(error) => {
                    // A filesystem without O_TMPFILE: every image is made where it is written.
                    log::debug!("{}: no spare image files: {error}", dir.display());
                    return;
                }
            }
        }
    }

    /// A spare file of `dir`, if the running dump's pool is for `dir` and has one.
    pub(super) fn take(dir: &Path) -> Option<File> {
        let shared = ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
        let mut pool = shared.0.lock().unwrap_or_else(|e| e.into_inner());
        if pool.dir != dir {
            return None;
        }
        pool.ready.pop()
    }
}

/// Writes the image `path` (0600) with `bytes`.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    create_file(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_dump_starts_without_the_images_of_an_earlier_one() {
        let dir = std::env::temp_dir().join(format!("crust-earlier-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        create_dir(&dir).unwrap();
        for name in ["pagemap-7.img", "pages-1.img", "core-7.img", "crust-checksums.img", "dump.log", "notes.txt"] {
            fs::write(dir.join(name), b"x").unwrap();
        }
        assert_eq!(remove_earlier_images(&dir).unwrap(), 4);
        let mut left: Vec<String> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["dump.log", "notes.txt"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn images_and_their_directory_are_private() {
        let base = std::env::temp_dir().join(format!("crust-private-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let dir = base.join("a/b");
        create_dir(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o077, 0);
        check_dir(&dir).unwrap();
        let image = dir.join("core-1.img");
        fs::write(&image, b"old").unwrap();
        fs::set_permissions(&image, fs::Permissions::from_mode(0o644)).unwrap();
        write_file(&image, b"new").unwrap();
        assert_eq!(fs::metadata(&image).unwrap().mode() & 0o777, 0o600);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let error = check_dir(&dir).unwrap_err().to_string();
        assert!(error.ends_with("others can write to it (mode 777); images hold process memory: use a directory only its owner can write"), "{error}");
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn spare_files_take_the_names_of_images_and_the_others_vanish() {
        use std::io::Read;
        let dir = std::env::temp_dir().join(format!("crust-spares-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        create_dir(&dir).unwrap();
        let spares = Spares::start(&dir, 3).expect("no other pool in this process");
        assert!(Spares::start(&dir, 1).is_none(), "one pool at a time");
        assert_eq!(spares.wait_made(3), 3, "O_TMPFILE works in {}", dir.display());
        create_file(&dir.join("core-1.img")).unwrap().write_all(b"core").unwrap();
        write_file(&dir.join("mm-1.img"), b"mm").unwrap();
        // Another directory gets a file of its own.
        let other = dir.join("sub");
        create_dir(&other).unwrap();
        write_file(&other.join("pstree.img"), b"tree").unwrap();
        assert_eq!(spares.ready(), 1, "the two images of the pool's directory took spares");
        drop(spares);
        let mut names: Vec<String> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["core-1.img", "mm-1.img", "sub"]);
        for (name, text) in [("core-1.img", "core"), ("mm-1.img", "mm"), ("sub/pstree.img", "tree")] {
            let mut read = String::new();
            fs::File::open(dir.join(name)).unwrap().read_to_string(&mut read).unwrap();
            assert_eq!(read, text);
            assert_eq!(fs::metadata(dir.join(name)).unwrap().mode() & 0o777, FILE_MODE, "{name}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
