//! Where `chordnet get` writes a download.
//!
//! - `-` is stdout; an existing file that is not a regular file (a device such as /dev/null, a
//!   FIFO, a socket) is written straight through, never replaced;
//! - a directory (existing, or any `-o` ending in `/`) means "under the file's name inside it";
//! - a regular file (existing or not) is written beside its final place under a temporary
//!   name and renamed into place only once complete and verified; a failure removes the
//!   temporary file, so nothing half-written is left behind. Through a symbolic link, the file
//!   it points at is replaced, not the link.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tokio::io::AsyncWrite;

pub enum Destination {
    Stdout,
    /// An existing file that is not a regular file: written in place.
    Special(PathBuf),
    /// A regular file: written to `tmp`, then renamed to `path`.
    Regular {
        path: PathBuf,
        tmp: PathBuf,
    },
}

/// An open destination.
pub type Sink = Box<dyn AsyncWrite + Unpin + Send>;

impl Destination {
    /// Where `-o output` (none: `name` in the current directory) puts the file `name`, which
    /// is a valid file name (so it cannot leave a directory it is joined to). A file the user
    /// did not name (no `-o`, or `-o DIR`) is not overwritten unless `force`.
    pub fn resolve(output: Option<&Path>, name: &str, force: bool) -> anyhow::Result<Destination> {
        let chosen_for_the_user = |path: PathBuf| {
            if !force && std::fs::symlink_metadata(&path).is_ok() {
                bail!(
                    "{} exists: --force overwrites it, -o names another place",
                    path.display()
                );
            }
            file_at(path)
        };
        let Some(out) = output else {
            return chosen_for_the_user(PathBuf::from(name));
        };
        if out.as_os_str() == "-" {
            return Ok(Destination::Stdout);
        }
        let dir_meant = out.as_os_str().as_encoded_bytes().ends_with(b"/");
        match std::fs::metadata(out) {
            Ok(md) if md.is_dir() => chosen_for_the_user(out.join(name)),
            Ok(_) if dir_meant => bail!("{} is not a directory", out.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir_meant => {
                bail!("directory {} does not exist", out.display())
            }
            _ => file_at(out.to_path_buf()),
        }
    }

    /// Opens it for writing (a regular file: its temporary file).
    pub async fn open(&self) -> anyhow::Result<Sink> {
        Ok(match self {
            Destination::Stdout => Box::new(tokio::io::stdout()),
            Destination::Special(path) => Box::new(
                tokio::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .await
                    .with_context(|| format!("opening {}", path.display()))?,
            ),
            Destination::Regular { tmp, .. } => Box::new(
                tokio::fs::File::create(tmp)
                    .await
                    .with_context(|| format!("creating {}", tmp.display()))?,
            ),
        })
    }

    /// What an interrupted download left of a regular file (bytes), if anything.
    pub async fn partial_len(&self) -> u64 {
        match self {
            Destination::Regular { tmp, .. } => tokio::fs::metadata(tmp)
                .await
                .map_or(0, |m| if m.is_file() { m.len() } else { 0 }),
            _ => 0,
        }
    }

    /// Opens a regular file's temporary file to continue it after its first `keep` bytes
    /// (the rest is cut off), with the SHA-256 state of those bytes.
    pub async fn open_at(&self, keep: u64) -> anyhow::Result<(Sink, sha2::Sha256)> {
        use sha2::Digest;
        use tokio::io::AsyncReadExt;
        let Destination::Regular { tmp, .. } = self else {
            bail!("--resume continues a regular file, not {}", self.describe());
        };
        let mut file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(tmp)
            .await
            .with_context(|| format!("opening {}", tmp.display()))?;
        file.set_len(keep)
            .await
            .with_context(|| format!("truncating {}", tmp.display()))?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file
                .read(&mut buf)
                .await
                .with_context(|| format!("reading {}", tmp.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok((Box::new(file), hasher))
    }

    /// The content is complete and verified: a regular file takes its place.
    pub async fn commit(&self) -> anyhow::Result<()> {
        if let Destination::Regular { path, tmp } = self
            && let Err(e) = tokio::fs::rename(tmp, path).await
        {
            self.abandon().await;
            return Err(e).with_context(|| format!("writing {}", path.display()));
        }
        Ok(())
    }

    /// The download failed: nothing half-written stays.
    pub async fn abandon(&self) {
        if let Destination::Regular { tmp, .. } = self {
            let _ = tokio::fs::remove_file(tmp).await;
        }
    }

    /// Where the content went, as a user reads it.
    pub fn describe(&self) -> String {
        match self {
            Destination::Stdout => "stdout".to_string(),
            Destination::Special(path) | Destination::Regular { path, .. } => {
                path.display().to_string()
            }
        }
    }
}

/// The destination for the path of a file (not a directory).
fn file_at(path: PathBuf) -> anyhow::Result<Destination> {
    match std::fs::metadata(&path) {
        Ok(md) if md.is_dir() => bail!("{} is a directory", path.display()),
        Ok(md) if md.is_file() => {
            // Through a link, the file it points at is replaced, not the link.
            let real = std::fs::canonicalize(&path)
                .with_context(|| format!("resolving {}", path.display()))?;
            Ok(regular(real))
        }
        Ok(_) => Ok(Destination::Special(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(regular(path)),
        Err(e) => Err(e).with_context(|| format!("cannot write to {}", path.display())),
    }
}

/// `dir/.name.chordnet-part` beside `path`.
fn regular(path: PathBuf) -> Destination {
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file}.chordnet-part"));
    Destination::Regular { path, tmp }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        let dir = std::env::temp_dir().join(format!("chordnet-out-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let d = Destination::resolve(Some(&dir), "x.txt", false).expect("dir");
        assert_eq!(d.describe(), dir.join("x.txt").display().to_string());
        let d = Destination::resolve(None, "x.txt", false).expect("cwd");
        assert!(
            matches!(&d, Destination::Regular { tmp, .. } if tmp.ends_with(".x.txt.chordnet-part"))
        );
        assert!(matches!(
            Destination::resolve(Some(Path::new("-")), "x", false).expect("stdout"),
            Destination::Stdout
        ));
        assert!(matches!(
            Destination::resolve(Some(Path::new("/dev/null")), "x", false).expect("device"),
            Destination::Special(_)
        ));
        let missing = dir.join("missing/");
        assert!(Destination::resolve(Some(&missing), "x", false).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
