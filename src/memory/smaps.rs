//! The file mappings of this process, read from `/proc/self/smaps`.

#[cfg(target_os = "linux")]
use std::io;

/// One mapping of a file, as `/proc/self/smaps` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMapping {
    pub start: usize,
    pub end: usize,
    /// `r-xp`, `r--p`, `rw-p`...
    pub perms: String,
    /// Where in the file the mapping starts.
    pub offset: u64,
    pub path: String,
    /// Bytes of the mapping resident in this process.
    pub resident: u64,
    /// Bytes of the mapping that are private copies (a mapping with any is never released).
    pub anonymous: u64,
}

impl FileMapping {
    /// Whether dropping the mapping's pages loses nothing: a private, read-only mapping of a
    /// file with no private page (code, read-only data).
    pub fn releasable(&self) -> bool {
        let p = self.perms.as_bytes();
        p.len() == 4
            && p[0] == b'r'
            && p[1] == b'-'
            && p[3] == b'p'
            && self.anonymous == 0
            && self.end > self.start
    }
}

/// The mappings of files (those with an absolute path) in an smaps text; neighbours that
/// continue one another (same file, permissions, and offsets in step: one mapping the kernel
/// keeps apart, like the pages of a [`super::rodata::split`]) come as one.
pub fn file_mappings(smaps: &str) -> Vec<FileMapping> {
    let mut parser = Parser::default();
    smaps.lines().for_each(|l| parser.line(l));
    parser.finish()
}

/// Reads smaps line by line (one page per read-only data page after a split: a few hundred KiB
/// of text that need not sit in memory at once).
#[cfg(target_os = "linux")]
pub(super) fn read_file_mappings(path: &str) -> io::Result<Vec<FileMapping>> {
    use std::io::BufRead;
    let mut parser = Parser::default();
    let mut reader = io::BufReader::new(std::fs::File::open(path)?);
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 {
        parser.line(line.trim_end());
        line.clear();
    }
    Ok(parser.finish())
}

#[derive(Default)]
struct Parser {
    out: Vec<FileMapping>,
    current: Option<FileMapping>,
}

impl Parser {
    fn line(&mut self, line: &str) {
        if let Some(header) = mapping_header(line) {
            self.flush();
            self.current = header;
            return;
        }
        let Some(m) = self.current.as_mut() else {
            return;
        };
        if let Some(kib) = field_kib(line, "Rss:") {
            m.resident = kib * 1024;
        } else if let Some(kib) = field_kib(line, "Anonymous:") {
            m.anonymous = kib * 1024;
        }
    }

    fn flush(&mut self) {
        let Some(m) = self.current.take() else { return };
        if let Some(last) = self.out.last_mut()
            && last.path == m.path
            && last.perms == m.perms
            && last.end == m.start
            && last.offset + (last.end - last.start) as u64 == m.offset
        {
            last.end = m.end;
            last.resident += m.resident;
            last.anonymous += m.anonymous;
            return;
        }
        self.out.push(m);
    }

    fn finish(mut self) -> Vec<FileMapping> {
        self.flush();
        self.out
    }
}

/// `Some(None)` for a mapping header that is not of a file, `Some(Some(_))` for one that is,
/// `None` for a field line.
fn mapping_header(line: &str) -> Option<Option<FileMapping>> {
    let h = header(line)?;
    Some(h.path.starts_with('/').then(|| FileMapping {
        start: h.start,
        end: h.end,
        perms: h.perms.to_owned(),
        offset: h.offset,
        path: h.path.to_owned(),
        resident: 0,
        anonymous: 0,
    }))
}

/// A mapping's header line of `/proc/self/maps` or `/proc/self/smaps`:
/// `start-end perms offset device inode [path]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Header<'a> {
    pub start: usize,
    pub end: usize,
    pub perms: &'a str,
    pub offset: u64,
    /// A file's path (it may hold spaces), a name like `[stack]`, or empty (anonymous memory).
    pub path: &'a str,
}

/// The header in `line`; `None` for any other line (an smaps field, garbage).
pub(super) fn header(line: &str) -> Option<Header<'_>> {
    let mut parts = line.splitn(6, ' ');
    let (start, end) = parts.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = parts.next()?;
    let offset = u64::from_str_radix(parts.next()?, 16).ok()?;
    let (_device, _inode) = (parts.next()?, parts.next()?);
    Some(Header {
        start,
        end,
        perms,
        offset,
        path: parts.next().unwrap_or("").trim(),
    })
}

fn field_kib(line: &str, name: &str) -> Option<u64> {
    let rest = line.strip_prefix(name)?;
    rest.trim().strip_suffix("kB")?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
5581a0000000-5581a0200000 r--p 00000000 fd:01 42                         /usr/local/bin/chord net
Size:               2048 kB
Rss:                 512 kB
Anonymous:             0 kB
5581a0200000-5581a1000000 r-xp 00200000 fd:01 42                         /usr/local/bin/chord net
Size:              14336 kB
Rss:               10240 kB
Pss:                1280 kB
Anonymous:             0 kB
5581a1000000-5581a1100000 r--p 01000000 fd:01 42                         /usr/local/bin/chord net
Rss:                 432 kB
Anonymous:           432 kB
5581a1100000-5581a1108000 rw-p 01100000 fd:01 42                         /usr/local/bin/chord net
Rss:                  32 kB
Anonymous:            32 kB
7f0000000000-7f0000001000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   4 kB
Anonymous:             0 kB
7f0000002000-7f0000004000 r-xp 00000000 fd:01 77                         /lib/patched.so
Rss:                   8 kB
Anonymous:             4 kB
7f0000004000-7f0000005000 r--s 00000000 fd:01 78                         /dev/shm/shared
Rss:                   4 kB
Anonymous:             0 kB
7f0000005000-7f0000006000 rw-p 00000000 00:00 0 
Rss:                   4 kB
Anonymous:             4 kB
";

    #[test]
    fn only_clean_read_only_private_file_mappings_are_released() {
        let files = file_mappings(SMAPS);
        let paths: Vec<(&str, &str)> = files
            .iter()
            .map(|m| (m.perms.as_str(), m.path.as_str()))
            .collect();
        assert_eq!(
            paths,
            [
                ("r--p", "/usr/local/bin/chord net"),
                ("r-xp", "/usr/local/bin/chord net"),
                ("r--p", "/usr/local/bin/chord net"),
                ("rw-p", "/usr/local/bin/chord net"),
                ("r-xp", "/lib/patched.so"),
                ("r--s", "/dev/shm/shared"),
            ]
        );
        assert_eq!(
            files[1],
            FileMapping {
                start: 0x5581a0200000,
                end: 0x5581a1000000,
                perms: "r-xp".into(),
                offset: 0x200000,
                path: "/usr/local/bin/chord net".into(),
                resident: 10240 * 1024,
                anonymous: 0,
            }
        );
        let releasable: Vec<bool> = files.iter().map(FileMapping::releasable).collect();
        // Read-only data and code: yes. Relocated read-only data (private pages), writable
        // data, a patched library, a shared mapping: no.
        assert_eq!(releasable, [true, true, false, false, false, false]);
    }

    /// The pages of a split come as one mapping; a neighbour of another file, permission or
    /// offset does not join it.
    #[test]
    fn mappings_that_continue_one_another_come_as_one() {
        let smaps = "\
1000-2000 r--p 00000000 fd:01 42 /bin/x
Rss: 4 kB
Anonymous: 0 kB
2000-3000 r--p 00001000 fd:01 42 /bin/x
Rss: 0 kB
Anonymous: 0 kB
3000-5000 r--p 00002000 fd:01 42 /bin/x
Rss: 8 kB
Anonymous: 4 kB
5000-6000 r--p 00009000 fd:01 42 /bin/x
Rss: 4 kB
6000-7000 r-xp 0000a000 fd:01 42 /bin/x
7000-8000 r-xp 0000b000 fd:01 43 /bin/y
";
        let files = file_mappings(smaps);
        let spans: Vec<(usize, usize, u64, u64)> = files
            .iter()
            .map(|m| (m.start, m.end, m.resident, m.anonymous))
            .collect();
        assert_eq!(
            spans,
            [
                (0x1000, 0x5000, 12 * 1024, 4 * 1024),
                (0x5000, 0x6000, 4 * 1024, 0),
                (0x6000, 0x7000, 0, 0),
                (0x7000, 0x8000, 0, 0),
            ]
        );
        // One private page anywhere keeps the whole run.
        assert!(!files[0].releasable());
    }

    #[test]
    fn headers_of_files_names_and_anonymous_memory() {
        let h = header("7ffd1000-7ffd3000 rw-p 00000000 00:00 0                          [stack]");
        assert_eq!(
            h,
            Some(Header {
                start: 0x7ffd1000,
                end: 0x7ffd3000,
                perms: "rw-p",
                offset: 0,
                path: "[stack]",
            })
        );
        let anonymous = header("7f0000005000-7f0000006000 rw-p 00000000 00:00 0 ").expect("header");
        assert_eq!(anonymous.path, "");
        let file =
            header("1000-2000 r--p 00003000 fd:01 42     /opt/my  app (deleted)").expect("header");
        assert_eq!((file.offset, file.path), (0x3000, "/opt/my  app (deleted)"));
        assert_eq!(header("Rss:                 512 kB"), None);
        assert_eq!(header("1000-2000 r--p"), None);
    }

    #[test]
    fn garbage_lines_are_skipped() {
        assert!(file_mappings("").is_empty());
        assert!(file_mappings("Rss: 4 kB\nnot a header\n").is_empty());
        assert!(file_mappings("zz-yy r-xp 0 0 0 /x\nRss: 4 kB\n").is_empty());
        assert!(file_mappings("10-20 r-xp zz 0 0 /x\n").is_empty());
    }
}
