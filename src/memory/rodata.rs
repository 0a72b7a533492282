//! The executable's read-only data mapped in pages of their own, so an idle peer keeps only the
//! constants it reads.
//!
//! On a read fault of a file mapping the kernel maps every page of the 64 KiB around the fault
//! that is in the page cache ("fault-around"; `MADV_RANDOM` does not stop it). Peers of one
//! executable on one machine share its page cache, so each ended up mapping what any of them
//! read near what it reads: 708 KiB of the executable's 1.3 MiB of `.rodata` per idle peer on a
//! ring of 64, against about 200 KiB that one peer reads. Code is laid out so that what an idle
//! peer runs sits together (`build.rs`, `link/hot-symbols.txt`); constants cannot be ordered
//! that way (Rust's have no names). But fault-around never crosses the edge of a mapping: so
//! once start-up is over, [`split`] cuts `.rodata` into one mapping per page, by giving every
//! other page a flag that changes nothing for it (`MADV_NOHUGEPAGE`: read-only data of a file
//! is not put in huge pages anyway), which keeps the kernel from merging neighbours.
//!
//! Cost: one kernel mapping (`vm_area_struct`, 192 bytes, and its share of the mapping tree)
//! per page, about 70 KiB of kernel memory for 330 pages, once per process.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::page_size;

/// Where a section of an executable lies, as linked (before the load address is added).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section {
    pub addr: u64,
    pub size: u64,
}

/// What [`section`] needs from an executable: the linked address of its program headers
/// (with `AT_PHDR`, where the process has them, that gives the load address) and the section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub program_headers: u64,
    pub section: Section,
}

/// Most program or section headers an executable may have for [`section`] to read them (a Rust
/// executable has about 40 sections and 12 program headers).
const MAX_SECTIONS: u16 = 4096;
/// Largest program or section header entry [`section`] accepts (64-bit ELF's are 56 and 64).
const MAX_ENTRY: u16 = 256;
/// Longest section-name table [`section`] reads.
const MAX_NAMES: u64 = 1 << 20;

const PT_LOAD: u32 = 1;
const PT_PHDR: u32 = 6;

/// The layout of section `name` in the 64-bit little-endian ELF file at `path`; `None` when the
/// file is no such ELF file, has no such section or no program headers inside a loaded segment.
pub fn section(path: &Path, name: &str) -> io::Result<Option<Layout>> {
    let file = File::open(path)?;
    let mut header = [0u8; 64];
    if file.read_exact_at(&mut header, 0).is_err() || !header.starts_with(b"\x7fELF\x02\x01") {
        return Ok(None);
    }
    let phoff = u64_at(&header, 0x20);
    let (phentsize, phnum) = (u16_at(&header, 0x36), u16_at(&header, 0x38));
    let shoff = u64_at(&header, 0x28);
    let (shentsize, shnum, shstrndx) = (
        u16_at(&header, 0x3a),
        u16_at(&header, 0x3c),
        u16_at(&header, 0x3e),
    );
    if !(56..=MAX_ENTRY).contains(&phentsize)
        || !(64..=MAX_ENTRY).contains(&shentsize)
        || phnum > MAX_SECTIONS
        || shnum > MAX_SECTIONS
        || shstrndx >= shnum
    {
        return Ok(None);
    }
    let Some(program_headers) = program_headers_address(&file, phoff, phentsize, phnum)? else {
        return Ok(None);
    };
    let mut table = vec![0u8; usize::from(shnum) * usize::from(shentsize)];
    if file.read_exact_at(&mut table, shoff).is_err() {
        return Ok(None);
    }
    let entry = |i: usize| &table[i * usize::from(shentsize)..][..64];
    let names = entry(usize::from(shstrndx));
    let (names_offset, names_size) = (u64_at(names, 0x18), u64_at(names, 0x20));
    if names_size > MAX_NAMES {
        return Ok(None);
    }
    let mut names = vec![0u8; names_size as usize];
    if file.read_exact_at(&mut names, names_offset).is_err() {
        return Ok(None);
    }
    for i in 0..usize::from(shnum) {
        let e = entry(i);
        let at = u32_at(e, 0) as usize;
        let this = names
            .get(at..)
            .and_then(|n| n.split(|b| *b == 0).next())
            .unwrap_or_default();
        if this == name.as_bytes() {
            let section = Section {
                addr: u64_at(e, 0x10),
                size: u64_at(e, 0x20),
            };
            return Ok(Some(Layout {
                program_headers,
                section,
            }));
        }
    }
    Ok(None)
}

/// The linked address of the program headers: `PT_PHDR`'s, else found through the loaded
/// segment whose file range holds them.
fn program_headers_address(
    file: &File,
    phoff: u64,
    phentsize: u16,
    phnum: u16,
) -> io::Result<Option<u64>> {
    let mut table = vec![0u8; usize::from(phnum) * usize::from(phentsize)];
    if file.read_exact_at(&mut table, phoff).is_err() {
        return Ok(None);
    }
    let headers = table.chunks_exact(usize::from(phentsize));
    let mut through_load = None;
    for h in headers {
        let (kind, offset, vaddr, filesz) = (
            u32_at(h, 0),
            u64_at(h, 0x08),
            u64_at(h, 0x10),
            u64_at(h, 0x20),
        );
        if kind == PT_PHDR {
            return Ok(Some(vaddr));
        }
        if kind == PT_LOAD
            && offset <= phoff
            && phoff < offset.saturating_add(filesz)
            && let Some(at) = vaddr.checked_add(phoff - offset)
        {
            through_load.get_or_insert(at);
        }
    }
    Ok(through_load)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// Where this process has its executable's `.rodata`, page-aligned outwards; `None` when it
/// cannot tell (no such section, not ELF, a foreign byte order).
#[cfg(target_os = "linux")]
pub fn this_rodata() -> Option<Range<usize>> {
    if cfg!(target_endian = "big") || cfg!(not(target_pointer_width = "64")) {
        return None;
    }
    let layout = section(Path::new("/proc/self/exe"), ".rodata").ok()??;
    // SAFETY: getauxval only reads the auxiliary vector the kernel gave the process.
    let phdr = unsafe { libc::getauxval(libc::AT_PHDR) };
    if phdr == 0 {
        return None;
    }
    let bias = phdr.wrapping_sub(layout.program_headers);
    let start = usize::try_from(bias.wrapping_add(layout.section.addr)).ok()?;
    let len = usize::try_from(layout.section.size).ok()?;
    let page = page_size();
    let end = start.checked_add(len)?.checked_next_multiple_of(page)?;
    Some(start - start % page..end)
}

/// Cuts `range` (page-aligned, inside one read-only private mapping of a file) into one mapping
/// per page; returns the number of pages. Their contents and protection do not change.
#[cfg(target_os = "linux")]
pub fn split(range: Range<usize>) -> io::Result<usize> {
    let page = page_size();
    if !range.start.is_multiple_of(page)
        || !range.end.is_multiple_of(page)
        || range.end < range.start
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the range to split is not page-aligned",
        ));
    }
    let mut at = range.start + page;
    while at < range.end {
        // SAFETY: the caller hands a range of one read-only private file mapping of this
        // process; MADV_NOHUGEPAGE only sets a flag on the page's mapping (no data, protection
        // or residency changes), which is what keeps it apart from its neighbours.
        if unsafe { libc::madvise(at as *mut libc::c_void, page, libc::MADV_NOHUGEPAGE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        at += 2 * page;
    }
    Ok((range.end - range.start) / page)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::super::smaps::{Header, header};
    use super::*;
    use std::io::Read;

    /// A private read-only mapping of a fresh file of `pages` pages (its pages are in the page
    /// cache: it was just written), with page `i` holding byte `i`.
    struct Mapped {
        addr: usize,
        len: usize,
    }

    /// A fresh path in the temporary directory.
    fn temp_path(tag: &str) -> std::path::PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!("chordnet-rodata-{tag}-{}-{n}", std::process::id()))
    }

    impl Mapped {
        fn new(pages: usize) -> Mapped {
            let page = page_size();
            let path = temp_path("data");
            let bytes: Vec<u8> = (0..pages * page).map(|i| (i / page) as u8).collect();
            std::fs::write(&path, &bytes).expect("write");
            let file = File::open(&path).expect("open");
            use std::os::fd::AsRawFd;
            // SAFETY: a fresh private read-only mapping of a file this test owns.
            let addr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    pages * page,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE,
                    file.as_raw_fd(),
                    0,
                )
            };
            // The mapping keeps the file's pages; its name is not needed any more.
            let _ = std::fs::remove_file(&path);
            assert_ne!(addr, libc::MAP_FAILED, "mmap");
            Mapped {
                addr: addr as usize,
                len: pages * page,
            }
        }

        fn byte(&self, page: usize) -> u8 {
            // SAFETY: inside the mapping, which is readable.
            unsafe { std::ptr::read_volatile((self.addr + page * page_size()) as *const u8) }
        }

        /// Pages of the mapping this process has mapped (the present bit of /proc/self/pagemap).
        fn resident(&self) -> usize {
            let page = page_size();
            let map = File::open("/proc/self/pagemap").expect("pagemap");
            let mut entries = vec![0u8; self.len / page * 8];
            map.read_exact_at(&mut entries, (self.addr / page * 8) as u64)
                .expect("read pagemap");
            entries
                .chunks_exact(8)
                .filter(|e| u64_at(e, 0) >> 63 == 1)
                .count()
        }

        /// How many mappings of /proc/self/maps lie in it.
        fn mappings(&self) -> usize {
            let mut maps = String::new();
            File::open("/proc/self/maps")
                .and_then(|mut f| f.read_to_string(&mut maps))
                .expect("maps");
            maps.lines()
                .filter_map(header)
                .filter(|h| h.start >= self.addr && h.end <= self.addr + self.len)
                .count()
        }
    }

    impl Drop for Mapped {
        fn drop(&mut self) {
            // SAFETY: the mapping this value made; nothing refers to it any more.
            unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
        }
    }

    /// A fault maps the faulting page only: fault-around stops at the mapping's edge. Before
    /// the split one read mapped up to 16 cached neighbours (the kernel's 64 KiB fault-around).
    #[test]
    fn a_split_mapping_maps_only_the_pages_read() {
        let _alone = crate::memory::tests::RELEASING
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let unsplit = Mapped::new(64);
        assert_eq!(unsplit.byte(20), 20);
        let around = unsplit.resident();

        let m = Mapped::new(64);
        let pages = split(m.addr..m.addr + m.len).expect("split");
        assert_eq!(pages, 64);
        assert_eq!(m.mappings(), 64, "one mapping per page");
        assert_eq!(m.byte(20), 20);
        assert_eq!(m.byte(41), 41);
        assert_eq!(m.byte(0), 0);
        assert_eq!(m.byte(63), 63);
        assert_eq!(m.resident(), 4, "unsplit, one read mapped {around} pages");
    }

    #[test]
    fn a_range_that_is_not_page_aligned_is_refused() {
        let m = Mapped::new(4);
        let err = split(m.addr + 1..m.addr + m.len).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(m.mappings(), 1);
    }

    /// The test executable has its `.rodata` where the process maps its file read-only.
    #[test]
    fn this_executables_rodata_is_found_in_a_read_only_mapping_of_it() {
        let exe = std::env::current_exe().expect("exe");
        let layout = section(&exe, ".rodata").expect("read").expect("a .rodata");
        assert!(layout.section.size > 0);
        let range = this_rodata().expect("rodata range");
        let exe = exe.to_string_lossy().into_owned();
        let mut maps = String::new();
        File::open("/proc/self/maps")
            .and_then(|mut f| f.read_to_string(&mut maps))
            .expect("maps");
        let holding: Vec<Header> = maps
            .lines()
            .filter_map(header)
            .filter(|h| h.path == exe && h.start < range.end && range.start < h.end)
            .collect();
        assert!(!holding.is_empty(), "{range:x?} in\n{maps}");
        assert!(holding.iter().all(|h| h.perms == "r--p"), "{holding:?}");
        // A string constant of this test lies in it.
        let text: &'static str = "a constant in .rodata";
        let at = text.as_ptr() as usize;
        assert!(range.contains(&at), "{at:x} not in {range:x?}");
    }

    #[test]
    fn files_that_are_not_elf_have_no_sections() {
        let path = temp_path("not-elf");
        std::fs::write(&path, b"#!/bin/sh\necho hi\n").expect("write");
        assert_eq!(section(&path, ".rodata").expect("read"), None);
        let mut elf = b"\x7fELF\x02\x01".to_vec();
        elf.resize(64, 0xff);
        std::fs::write(&path, &elf).expect("write");
        assert_eq!(section(&path, ".rodata").expect("read"), None);
        std::fs::write(&path, b"\x7fELF").expect("write");
        assert_eq!(section(&path, ".rodata").expect("read"), None);
        let _ = std::fs::remove_file(&path);
    }
}
