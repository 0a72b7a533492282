//! Giving memory back while the peer runs: the executable's pages that start-up code left
//! resident (as a kernel frees its `__init` sections once booted), and the allocator's free
//! pages.
//!
//! A peer's executable holds 12–15 MiB of machine code and 3 MiB of read-only data. The kernel
//! maps them on demand, but on every fault it maps the cached pages of the 64 KiB around the
//! page, and for executable mappings it also reads 128 KiB around it into the cache. So code
//! that ran once at start (configuration, the command line, TLS and transport set-up, the join)
//! and whatever lies next to the few functions the idle loop runs stays counted in the resident
//! set: about 10 MiB of an idle peer's 12–16 MiB, against 1.6 MiB of the peer's own (anonymous)
//! memory.
//!
//! A release, for every read-only private mapping of a file that holds no private page:
//! - `MADV_RANDOM`: later faults of read-only data read the one page they need from the file,
//!   not its neighbours (the kernel ignores it for executable mappings: there the image's build
//!   lays the code an idle peer runs out together instead, `build.rs`); neighbours already in
//!   the page cache are still mapped with it (the kernel's fault-around), so read-only data that
//!   other peers of the executable touch stays counted too;
//! - `MADV_DONTNEED`: unmaps the pages from this process (they are clean copies of the file;
//!   the next access maps the same contents again);
//! - `POSIX_FADV_DONTNEED` on the file's range: drops the pages no process maps any more from
//!   the page cache, so what later faults find cached around a page is what runs.
//!
//! Then `malloc_trim` hands the allocator's free pages back. Nothing is lost: a page a debugger
//! patched, or one written by start-up relocations (the executable's `.data.rel.ro`, read-only
//! after them), is private, and its mapping is left alone. The price is paid once per page by
//! the code that runs next: a page fault, and a read from disk or the host's cache.
//!
//! [`keep_releasing`] does it once start-up is over, once more shortly after, then whenever the
//! process was quiet (under [`QUIET_CPU`] of one core) for a whole
//! `memory.release_code_interval`: a busy peer keeps its pages, so a release never stalls a
//! loaded one.

use std::io;
use std::time::Duration;

use prometheus::IntCounter;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// How long after the peer is first ready the first release waits: the join's last steps
/// (fingers, the first hand-offs) are start-up code too.
pub const AFTER_START: Duration = Duration::from_secs(5);

/// How long after the first release the second comes (if quiet). Pages another process still
/// maps stay cached, and a fault maps the cached pages around it: peers of one image started
/// together on one machine (a ring on a laptop, pods on a node) each release their start-up
/// pages while the others still hold theirs, so the first release leaves more than the second.
pub const SECOND_AFTER: Duration = Duration::from_secs(15);

/// The share of one core under which the process counts as quiet (an idle peer's maintenance
/// takes well under 1 %).
pub const QUIET_CPU: f64 = 0.02;

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

/// What one [`release`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Mappings given back.
    pub mappings: usize,
    /// Their resident bytes before (what the resident set shrank by, until code runs again).
    pub bytes: u64,
    /// Read-only file mappings kept because they hold private pages.
    pub kept: usize,
    /// Mappings whose file could not be opened to drop its cached pages (a deleted or replaced
    /// executable): unmapped all the same.
    pub not_evicted: usize,
}

/// The mappings of files (those with an absolute path) in an smaps text.
pub fn file_mappings(smaps: &str) -> Vec<FileMapping> {
    let mut out = Vec::new();
    let mut current: Option<FileMapping> = None;
    for line in smaps.lines() {
        if let Some(header) = mapping_header(line) {
            out.extend(current.take());
            current = header;
            continue;
        }
        let Some(m) = current.as_mut() else { continue };
        if let Some(kib) = field_kib(line, "Rss:") {
            m.resident = kib * 1024;
        } else if let Some(kib) = field_kib(line, "Anonymous:") {
            m.anonymous = kib * 1024;
        }
    }
    out.extend(current);
    out
}

/// `Some(None)` for a mapping header that is not of a file, `Some(Some(_))` for one that is,
/// `None` for a field line.
fn mapping_header(line: &str) -> Option<Option<FileMapping>> {
    let mut parts = line.split_ascii_whitespace();
    let (start, end) = parts.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = parts.next()?;
    let offset = u64::from_str_radix(parts.next()?, 16).ok()?;
    let (_device, _inode) = (parts.next()?, parts.next()?);
    // The path may hold spaces.
    let path = parts.collect::<Vec<_>>().join(" ");
    Some(path.starts_with('/').then(|| FileMapping {
        start,
        end,
        perms: perms.to_owned(),
        offset,
        path,
        resident: 0,
        anonymous: 0,
    }))
}

fn field_kib(line: &str, name: &str) -> Option<u64> {
    let rest = line.strip_prefix(name)?;
    rest.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// Gives back this process's resident pages of read-only file mappings, and the allocator's
/// free pages. Code runs on meanwhile: what it needs next faults back in.
#[cfg(target_os = "linux")]
pub fn release() -> io::Result<Released> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut done = Released::default();
    for m in file_mappings(&smaps) {
        if !m.releasable() {
            done.kept += usize::from(m.perms.starts_with("r-"));
            continue;
        }
        if m.resident == 0 {
            continue;
        }
        let (addr, len) = (m.start as *mut libc::c_void, m.end - m.start);
        // SAFETY: the range is one whole mapping of this process, private, read-only and
        // backed by a file, with no private page (checked just above): MADV_RANDOM changes
        // only how later faults read (advice: its result does not matter), and MADV_DONTNEED
        // only unmaps clean page-cache pages, which the next access maps again with the same
        // contents. No memory Rust owns or writes is affected.
        let rc = unsafe {
            libc::madvise(addr, len, libc::MADV_RANDOM);
            libc::madvise(addr, len, libc::MADV_DONTNEED)
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        done.mappings += 1;
        done.bytes += m.resident;
        if !evict(&m) {
            done.not_evicted += 1;
        }
    }
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory of the allocator's arenas to the system.
    unsafe {
        libc::malloc_trim(0);
    }
    Ok(done)
}

/// Makes the allocator serve every thread from one arena (glibc's default: a new arena for each
/// thread that finds the others locked, up to 8 per core), unless `GLIBC_TUNABLES` sets
/// `glibc.malloc.arena_max` itself; `true` when it did. Call it before the runtime starts its
/// threads.
///
/// A peer's allocations are small and short-lived, and each thread keeps its own cache of freed
/// blocks (glibc's tcache), so one arena costs lookups nothing measurable; with one per worker,
/// what one worker freed sat in its arena, out of the other's reach. Measured with `cargo bench
/// --bench lookups` on 64 peers: 3.2 against 2.6 MiB of anonymous memory per peer after the
/// load, 2.3 against 2.2 idle.
pub fn one_arena() -> bool {
    if tunes_arenas(std::env::var("GLIBC_TUNABLES").ok().as_deref()) {
        return false;
    }
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes a tunable of the allocator; no thread allocates yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1) == 1
    }
    #[cfg(not(target_env = "gnu"))]
    false
}

/// Whether `GLIBC_TUNABLES` (`name=value` pairs separated by `:`) sets the arena count.
fn tunes_arenas(tunables: Option<&str>) -> bool {
    tunables.is_some_and(|t| {
        t.split(':')
            .any(|pair| pair.trim().starts_with("glibc.malloc.arena_max="))
    })
}

/// Drops the mapping's file pages that no process maps from the page cache.
#[cfg(target_os = "linux")]
fn evict(m: &FileMapping) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(file) = std::fs::File::open(&m.path) else {
        return false;
    };
    let (Ok(offset), Ok(len)) = (
        libc::off_t::try_from(m.offset),
        libc::off_t::try_from(m.end - m.start),
    ) else {
        return false;
    };
    // SAFETY: a valid open descriptor; the advice only drops clean, unmapped cached pages.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_DONTNEED) == 0 }
}

/// Elsewhere there is nothing to give back this way.
#[cfg(not(target_os = "linux"))]
pub fn release() -> io::Result<Released> {
    Ok(Released::default())
}

/// CPU time (user and system) this process has used.
fn process_cpu() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is a valid out-parameter.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) } != 0 {
        return Duration::ZERO;
    }
    // SAFETY: getrusage succeeded and filled it in (and zeroed is a valid rusage anyway).
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Releases [`AFTER_START`] after `ready` first turns true, then after [`SECOND_AFTER`] and
/// after every `every` through which the process was quiet, until `stop`. A failing release is
/// logged and not tried again.
pub async fn keep_releasing(
    mut ready: watch::Receiver<bool>,
    every: Duration,
    released: IntCounter,
    mut stop: watch::Receiver<bool>,
) {
    let run = async move {
        if ready.wait_for(|r| *r).await.is_err() {
            return;
        }
        tokio::time::sleep(AFTER_START.min(every)).await;
        let mut n = 0u32;
        loop {
            match release() {
                Ok(r) => {
                    released.inc_by(r.bytes);
                    let mib = r.bytes as f64 / f64::from(1 << 20);
                    if n == 0 {
                        info!(mappings = r.mappings, kept = r.kept, not_evicted = r.not_evicted, released_mib = format_args!("{mib:.1}"), every = ?every, "gave back start-up pages");
                    } else {
                        debug!(
                            mappings = r.mappings,
                            kept = r.kept,
                            released_mib = format_args!("{mib:.1}"),
                            "gave back pages"
                        );
                    }
                }
                Err(e) => {
                    warn!(error = %e, "cannot give back pages; not trying again");
                    return;
                }
            }
            n += 1;
            // Wait for a whole quiet interval.
            let wait = if n == 1 {
                SECOND_AFTER.min(every)
            } else {
                every
            };
            loop {
                let before = process_cpu();
                tokio::time::sleep(wait).await;
                let used = process_cpu().saturating_sub(before);
                if used.as_secs_f64() < QUIET_CPU * wait.as_secs_f64() {
                    break;
                }
            }
        }
    };
    tokio::select! {
        () = run => {}
        _ = stop.wait_for(|s| *s) => {}
    }
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

    #[test]
    fn garbage_lines_are_skipped() {
        assert!(file_mappings("").is_empty());
        assert!(file_mappings("Rss: 4 kB\nnot a header\n").is_empty());
        assert!(file_mappings("zz-yy r-xp 0 0 0 /x\nRss: 4 kB\n").is_empty());
        assert!(file_mappings("10-20 r-xp zz 0 0 /x\n").is_empty());
    }

    /// The process keeps running code from the pages it gave back: they fault back in.
    #[cfg(target_os = "linux")]
    #[test]
    fn released_code_runs_again() {
        let first = release().expect("release");
        assert!(first.mappings >= 1, "{first:?}");
        assert!(first.bytes > 0, "{first:?}");
        // Code, read-only data and formatting machinery run again after the release.
        let text = format!("{:?}", file_mappings(SMAPS));
        assert!(text.contains("chord net"));
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        assert!(file_mappings(&smaps).iter().any(FileMapping::releasable));
        assert!(process_cpu() > Duration::ZERO);
    }

    #[test]
    fn the_arena_count_a_user_tuned_is_left_alone() {
        assert!(!tunes_arenas(None));
        assert!(!tunes_arenas(Some("glibc.malloc.trim_threshold=0")));
        assert!(tunes_arenas(Some("glibc.malloc.arena_max=4")));
        assert!(tunes_arenas(Some(
            "glibc.malloc.tcache_count=0:glibc.malloc.arena_max=2"
        )));
        assert!(!tunes_arenas(Some("glibc.malloc.arena_test=2")));
    }
}
