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

/// Creates (or truncates) the image `path`, 0600, for writing.
pub fn create_file(path: &Path) -> io::Result<File> {
    let file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(FILE_MODE).open(path)?;
    if file.metadata()?.mode() & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    }
    Ok(file)
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
}
