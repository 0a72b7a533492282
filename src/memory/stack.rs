//! Giving back the pages of a thread's stack that lie below what it uses now.
//!
//! A thread's stack keeps every page it ever reached: start-up's deepest call chains (the
//! configuration, the runtime's and the transports' set-up, the join) leave pages below the few
//! frames a serving peer's main thread keeps while it waits. Nothing lives below a thread's stack
//! pointer, so those pages can be handed back; the next deep call gets fresh zeroed pages.
//! (The frames it keeps must be small too: `src/main.rs` keeps the commands out of `run`'s.)
//! Measured on an idle peer of a ring of 64: main-thread stack 144 KiB before, 37 KiB after.

use std::io;

/// What stays untouched below the stack pointer: the frames of the calls that do the trimming
/// (the system call's wrapper among them) live there while it runs.
const MARGIN: usize = 8 * 1024;

/// Gives back the calling thread's stack pages below its stack pointer (less [`MARGIN`]);
/// returns how many bytes the range spanned (resident or not).
#[cfg(target_os = "linux")]
#[inline(never)]
pub fn trim_this_stack() -> io::Result<usize> {
    let marker = 0u8;
    let sp = std::hint::black_box(&marker) as *const u8 as usize;
    let Some(low) = mapping_start(sp)? else {
        return Ok(0);
    };
    let page = super::page_size();
    let high = sp.saturating_sub(MARGIN) / page * page;
    if high <= low {
        return Ok(0);
    }
    // SAFETY: [low, high) is the part of this thread's own stack mapping more than MARGIN
    // below its stack pointer: no frame of this thread lives there (the stack grows down, and
    // the frames of this call and of madvise stay within MARGIN), and no other thread uses
    // this thread's stack beyond the live frames. MADV_DONTNEED on private anonymous memory
    // only drops the pages; the next touch maps zeroed ones.
    if unsafe { libc::madvise(low as *mut libc::c_void, high - low, libc::MADV_DONTNEED) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(high - low)
}

/// The start of the private, anonymous, writable mapping of this process that holds `addr`
/// (a stack), from /proc/self/maps.
#[cfg(target_os = "linux")]
fn mapping_start(addr: usize) -> io::Result<Option<usize>> {
    use std::io::BufRead;
    let maps = io::BufReader::new(std::fs::File::open("/proc/self/maps")?);
    for line in maps.lines() {
        let line = line?;
        let Some(h) = super::smaps::header(&line) else {
            continue;
        };
        if h.start <= addr && addr < h.end {
            // The main thread's is named [stack]; the others' have no name.
            let anonymous = h.path.is_empty() || h.path == "[stack]";
            return Ok((h.perms == "rw-p" && anonymous).then_some(h.start));
        }
    }
    Ok(None)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Resident KiB of the mapping that holds `addr` (smaps).
    fn resident_kib_around(addr: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut inside = false;
        for line in smaps.lines() {
            if let Some(h) = super::super::smaps::header(line) {
                inside = h.start <= addr && addr < h.end;
                continue;
            }
            if inside && let Some(kib) = line.strip_prefix("Rss:") {
                return kib
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .expect("Rss");
            }
        }
        panic!("no mapping holds {addr:x}");
    }

    #[inline(never)]
    fn deep(n: usize) -> u8 {
        let mut buf = [0u8; 4096];
        buf[n % 4096] = n as u8;
        let below = if n > 0 { deep(n - 1) } else { 0 };
        std::hint::black_box(&mut buf)[n % 7].wrapping_add(below)
    }

    /// A thread that once went 1 MiB deep keeps that resident until it trims; after the trim
    /// only what it uses stays, and it can go deep again.
    #[test]
    fn a_trimmed_stack_keeps_only_what_is_above_the_stack_pointer() {
        std::thread::Builder::new()
            .stack_size(4 << 20)
            .spawn(|| {
                let marker = 0u8;
                let at = std::hint::black_box(&marker) as *const u8 as usize;
                std::hint::black_box(deep(256));
                let before = resident_kib_around(at);
                assert!(before >= 1024, "{before} KiB");
                let spanned = trim_this_stack().expect("trim");
                assert!(spanned >= 1 << 20, "{spanned}");
                let after = resident_kib_around(at);
                assert!(after <= 64, "{before} KiB before, {after} KiB after");
                std::hint::black_box(deep(256));
                assert!(resident_kib_around(at) >= 1024);
            })
            .expect("spawn")
            .join()
            .expect("the thread runs on");
    }

    #[test]
    fn the_main_stack_is_found_by_name() {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        let stack = maps
            .lines()
            .filter_map(super::super::smaps::header)
            .find(|h| h.path == "[stack]")
            .expect("[stack]");
        assert_eq!(
            mapping_start(stack.end - 8).expect("maps"),
            Some(stack.start)
        );
        assert_eq!(mapping_start(0).expect("maps"), None);
    }
}
