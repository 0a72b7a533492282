//! File-system facts the store needs that `std` does not give.

use std::path::Path;

/// Bytes available to an unprivileged writer on the file system holding `path`.
pub fn available_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-parameter.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_temp_dir_has_some_space() {
        let n = super::available_bytes(&std::env::temp_dir()).unwrap();
        assert!(n > 0);
        assert!(super::available_bytes(std::path::Path::new("/no/such/dir")).is_err());
    }
}
