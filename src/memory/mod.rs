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
//! The first release also cuts the executable's `.rodata` into one mapping per page
//! ([`rodata`]): fault-around never crosses a mapping's edge, so a peer then maps the constants
//! it reads and not the cached ones around them.
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
//!
//! A thread's stack pages below what it uses now can be given back too ([`stack`]; the peer
//! does it for the thread that ran its start-up, once it has started).

use std::io;
use std::time::Duration;

use prometheus::IntCounter;
use tokio::sync::watch;
use tracing::{debug, info, warn};

#[cfg(target_os = "linux")]
pub mod rodata;
mod smaps;
#[cfg(target_os = "linux")]
pub mod stack;

#[cfg(target_os = "linux")]
use smaps::read_file_mappings;
pub use smaps::{FileMapping, file_mappings};

/// How long after the peer is first ready the first release waits: the join's last steps
/// (fingers, the first hand-offs) are start-up code too.
pub const AFTER_START: Duration = Duration::from_secs(5);

/// How long after the first release the second comes (if quiet). Pages another process still
/// maps stay cached, and a fault maps the cached pages around it: peers of one image started
/// together on one machine (a ring on a laptop, pods on a node) each release their start-up
/// pages while the others still hold theirs, so the first release leaves more than the second.
pub const SECOND_AFTER: Duration = Duration::from_secs(15);

/// How often a quiet process hands the allocator's free pages back between releases: glibc
/// keeps what a freed connection or request used, and an idle peer of a ring of 64 grew its heap
/// by ~140 KiB in the 10 s after a release. (jemalloc purges unused pages after 10 s the same
/// way.)
pub const TRIM_HEAP_EVERY: Duration = Duration::from_secs(5);

/// The share of one core under which the process counts as quiet (an idle peer's maintenance
/// takes well under 1 %).
pub const QUIET_CPU: f64 = 0.02;

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
    /// Pages of the executable's read-only data this release put in mappings of their own
    /// ([`rodata`]; the first release does it).
    pub split_pages: usize,
}

/// Gives back this process's resident pages of read-only file mappings, and the allocator's
/// free pages. Code runs on meanwhile: what it needs next faults back in.
#[cfg(target_os = "linux")]
pub fn release() -> io::Result<Released> {
    let mappings = read_file_mappings("/proc/self/smaps")?;
    let mut done = Released {
        split_pages: split_rodata_once(&mappings),
        ..Released::default()
    };
    for m in mappings {
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
            let e = io::Error::last_os_error();
            // ENOMEM: the mapping went away after smaps was read (another thread unmapped
            // it); nothing to give back there.
            if e.raw_os_error() == Some(libc::ENOMEM) {
                continue;
            }
            return Err(e);
        }
        done.mappings += 1;
        done.bytes += m.resident;
        if !evict(&m) {
            done.not_evicted += 1;
        }
    }
    trim_heap();
    Ok(done)
}

/// Splits the executable's `.rodata` into a mapping per page ([`rodata`]) the first time it
/// is called; the number of pages (0 after the first call, or when it cannot).
#[cfg(target_os = "linux")]
fn split_rodata_once(mappings: &[FileMapping]) -> usize {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return 0;
    }
    let Some(range) = rodata::this_rodata() else {
        debug!("read-only data left in one mapping: its section is not found");
        return 0;
    };
    // Only inside a read-only private file mapping without private pages (the relocated
    // `.data.rel.ro` is not .rodata, but a linker may put them next to each other).
    let Some(inside) = mappings.iter().find_map(|m| {
        let (start, end) = (range.start.max(m.start), range.end.min(m.end));
        (m.releasable() && !m.perms.contains('x') && start < end).then_some(start..end)
    }) else {
        debug!("read-only data left in one mapping: no read-only mapping holds it");
        return 0;
    };
    match rodata::split(inside) {
        Ok(pages) => pages,
        Err(e) => {
            warn!(error = %e, "cannot split the read-only data into pages; left as it is");
            0
        }
    }
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

/// Whether `used` CPU time over `over` is under [`QUIET_CPU`] of one core.
fn quiet(used: Duration, over: Duration) -> bool {
    used.as_secs_f64() < QUIET_CPU * over.as_secs_f64()
}

/// Waits until the process was quiet through a whole `interval`, handing the allocator's free
/// pages back after every quiet [`TRIM_HEAP_EVERY`] meanwhile.
async fn wait_quiet(interval: Duration) {
    wait_quiet_with(interval, process_cpu, trim_heap).await;
}

/// [`wait_quiet`] with the process's CPU clock and the heap trim handed in.
async fn wait_quiet_with(
    interval: Duration,
    mut cpu: impl FnMut() -> Duration,
    mut trim: impl FnMut(),
) {
    let tick = TRIM_HEAP_EVERY.min(interval);
    let mut start = cpu();
    let mut waited = Duration::ZERO;
    loop {
        let before = cpu();
        tokio::time::sleep(tick).await;
        let now = cpu();
        if quiet(now.saturating_sub(before), tick) {
            trim();
        }
        waited += tick;
        if waited >= interval {
            if quiet(now.saturating_sub(start), waited) {
                return;
            }
            (start, waited) = (now, Duration::ZERO);
        }
    }
}

/// The system's page size.
#[cfg(target_os = "linux")]
pub fn page_size() -> usize {
    // SAFETY: sysconf only reads a system setting.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).ok().filter(|p| *p > 0).unwrap_or(4096)
}

/// Hands the allocator's free pages back to the system.
fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory of the allocator's arenas to the system.
    unsafe {
        libc::malloc_trim(0);
    }
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
                        info!(mappings = r.mappings, kept = r.kept, not_evicted = r.not_evicted, rodata_pages = r.split_pages, released_mib = format_args!("{mib:.1}"), every = ?every, "gave back start-up pages");
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
            wait_quiet(wait).await;
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

    /// Held by tests that count a mapping's resident pages while others may release them.
    pub(crate) static RELEASING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// The process keeps running code from the pages it gave back: they fault back in.
    #[cfg(target_os = "linux")]
    #[test]
    fn released_code_runs_again() {
        let _alone = RELEASING.lock().unwrap_or_else(|e| e.into_inner());
        let first = release().expect("release");
        assert!(first.mappings >= 1, "{first:?}");
        // The first release of the process cut the executable's .rodata into pages.
        let rodata = rodata::this_rodata().expect(".rodata");
        assert_eq!(first.split_pages, rodata.len() / page_size(), "{first:?}");
        assert_eq!(release().expect("again").split_pages, 0);
        assert!(first.bytes > 0, "{first:?}");
        // Code, read-only data and formatting machinery run again after the release.
        assert_eq!(format!("{:.1} MiB", 3.0f64 / 2.0), "1.5 MiB");
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        assert!(file_mappings(&smaps).iter().any(FileMapping::releasable));
        assert!(process_cpu() > Duration::ZERO);
    }

    #[test]
    fn quiet_is_under_two_percent_of_a_core() {
        let five = Duration::from_secs(5);
        assert!(quiet(Duration::from_millis(99), five));
        assert!(!quiet(Duration::from_millis(100), five));
        assert!(!quiet(Duration::from_millis(1), Duration::ZERO));
    }

    /// A busy interval does not count: the wait ends after the first whole quiet one, and the
    /// heap is trimmed after each quiet tick only.
    #[tokio::test(start_paused = true)]
    async fn waiting_for_quiet_ends_after_a_whole_quiet_interval_trimming_on_quiet_ticks() {
        let interval = Duration::from_secs(30);
        let started = tokio::time::Instant::now();
        // Half a core busy for the first 30 s, idle after.
        let cpu = || started.elapsed().min(interval) / 2;
        let mut trims = 0;
        wait_quiet_with(interval, cpu, || trims += 1).await;
        assert_eq!(started.elapsed(), 2 * interval);
        assert_eq!(trims, 6, "one per quiet 5 s tick");
    }

    /// The real clock: this test's process is nearly idle while the paused clock advances.
    #[tokio::test(start_paused = true)]
    async fn waiting_for_quiet_ends_after_a_quiet_interval() {
        let interval = Duration::from_secs(30);
        let started = tokio::time::Instant::now();
        wait_quiet(interval).await;
        assert!(started.elapsed() >= interval);
        assert!(started.elapsed() < interval * 3, "{:?}", started.elapsed());
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
