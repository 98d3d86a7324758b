//! What tells one version of a file from the next without reading it: its inode, size and
//! modification time. The secrets copy job writes a secret's new data as a new file (a rename),
//! so a changed secret always changes the stamp; a pass compares stamps (one `stat` per file)
//! and reads and parses only the files whose stamp changed (basic auth's htpasswd files, the
//! certificate pairs).

use std::path::Path;
use std::time::SystemTime;

/// A file's identity: equal stamps, same content (as far as a pass needs to know).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileStamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl FileStamp {
    /// The stamp of the file at `path` (`stat`), or why it cannot be read.
    pub(super) fn of(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        Ok(Self {
            inode: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_written_anew_has_another_stamp_and_an_untouched_one_the_same() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("secret");
        std::fs::write(&file, "one").unwrap();
        let first = FileStamp::of(&file).unwrap();
        assert_eq!(FileStamp::of(&file).unwrap(), first);
        let next = dir.path().join("secret.new");
        std::fs::write(&next, "two").unwrap();
        std::fs::rename(&next, &file).unwrap();
        assert_ne!(FileStamp::of(&file).unwrap(), first);
        assert!(FileStamp::of(&dir.path().join("missing")).is_err());
    }
}
