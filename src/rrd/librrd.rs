//! The few C functions the RRD writer needs: librrd's `rrd_create_r` and `rrd_update_r` (the
//! direct path C uses to create every file, and to update when rrdcached is not there or
//! fails), and libc's local-time conversion for the creation start.
//!
//! This is the only module of the daemon with `unsafe` code. No crate is used: the `rrd` crate
//! (the only maintained binding) generates its bindings with bindgen at build time and leaves
//! out the rrdcached client, so it would bring libclang to every build and still not cover
//! what C does; five declarations are less.
//!
//! librrd keeps its error text per thread (`rrd_get_error`); the reentrant `_r` functions are
//! safe to call from any thread as long as updates carry no at-style times. The caller
//! ([`super::files`]) makes every call under one mutex anyway.

use std::ffi::{c_char, c_int, c_ulong, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[link(name = "rrd")]
extern "C" {
    fn rrd_create_r(
        filename: *const c_char,
        pdp_step: c_ulong,
        last_up: libc::time_t,
        argc: c_int,
        argv: *const *const c_char,
    ) -> c_int;
    fn rrd_update_r(
        filename: *const c_char,
        template: *const c_char,
        argc: c_int,
        argv: *const *const c_char,
    ) -> c_int;
    fn rrd_get_error() -> *mut c_char;
    fn rrd_clear_error();
}

/// What librrd said when it failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RrdError(pub String);

fn cstring(b: &[u8]) -> Result<CString, RrdError> {
    CString::new(b).map_err(|_| RrdError("argument contains a NUL byte".into()))
}

/// The calling thread's librrd error text.
fn last_error() -> RrdError {
    // SAFETY: rrd_get_error returns the calling thread's context buffer, a NUL-terminated
    // string that stays valid until the next librrd call on this thread; it is copied at once.
    let msg = unsafe {
        let p = rrd_get_error();
        if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    RrdError(if msg.is_empty() {
        "unknown librrd error".into()
    } else {
        msg
    })
}

/// `rrd_create_r(file, step, start, args)`: a new RRD file (librrd refuses nothing that exists
/// only if told to; the caller checks that the file is absent, as C does).
pub fn create(file: &Path, step: u64, start: i64, args: &[String]) -> Result<(), RrdError> {
    let file = cstring(file.as_os_str().as_bytes())?;
    let args: Vec<CString> = args
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<Result<_, _>>()?;
    let argv: Vec<*const c_char> = args.iter().map(|a| a.as_ptr()).collect();
    let argc = c_int::try_from(argv.len()).map_err(|_| RrdError("too many arguments".into()))?;
    // SAFETY: every pointer is a NUL-terminated string owned by `file`/`args`, alive for the
    // whole call; argv has exactly argc entries; librrd only reads them (it copies what it
    // keeps). rrd_clear_error/rrd_create_r touch only this thread's librrd context.
    let rc = unsafe {
        rrd_clear_error();
        rrd_create_r(
            file.as_ptr(),
            step as c_ulong,
            start as libc::time_t,
            argc,
            argv.as_ptr(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(last_error())
    }
}

/// `rrd_update_r(file, NULL, 1, [update])`: one update written straight into the file.
pub fn update(file: &Path, update: &[u8]) -> Result<(), RrdError> {
    let file = cstring(file.as_os_str().as_bytes())?;
    let update = cstring(update)?;
    let argv = [update.as_ptr()];
    // SAFETY: `file` and `update` are NUL-terminated and outlive the call; argv holds the one
    // argument announced; a NULL template means "all data sources in order". librrd copies
    // the update string before parsing it.
    let rc = unsafe {
        rrd_clear_error();
        rrd_update_r(file.as_ptr(), std::ptr::null(), 1, argv.as_ptr())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(last_error())
    }
}

/// The local midnight that starts the day of `now` (C: `localtime`, fields zeroed, then
/// `timelocal`): the `start` of every file C creates.
pub fn local_midnight(now: i64) -> i64 {
    let t = now as libc::time_t;
    // SAFETY: an all-zero `tm` is a valid value for the out-parameter (plain integers and a
    // null zone pointer); localtime_r writes only into it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals for the duration of the call.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return now - now.rem_euclid(86400);
    }
    tm.tm_sec = 0;
    tm.tm_min = 0;
    tm.tm_hour = 0;
    // SAFETY: `tm` is a valid broken-down time filled by localtime_r; mktime normalises it in
    // place and reads the process's time zone.
    let t = unsafe { libc::mktime(&mut tm) };
    if t == -1 {
        now - now.rem_euclid(86400)
    } else {
        t as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn midnight_is_a_day_start_not_after_now() {
        let now = 1_795_693_658;
        let m = local_midnight(now);
        assert!(m <= now && now - m < 86400 + 3600, "{m}");
        assert_eq!(local_midnight(m), m);
    }

    /// librrd itself, straight into a temporary directory: create, update, refuse an update
    /// older than the last one with librrd's own message.
    #[test]
    fn create_and_update_through_librrd() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.rrd");
        let args = vec![
            "DS:a:GAUGE:120:0:U".to_owned(),
            "RRA:AVERAGE:0.5:1:10".to_owned(),
        ];
        create(&f, 60, 1_700_000_000, &args).unwrap();
        assert!(f.exists());
        update(&f, b"1700000060:5").unwrap();
        let e = update(&f, b"1700000000:5").unwrap_err();
        assert!(e.0.contains("illegal attempt to update"), "{e}");
        let e = update(&dir.path().join("missing"), b"N:1").unwrap_err();
        assert!(!e.0.is_empty());
        assert!(create(&f, 60, 0, &["bogus".to_owned()]).is_err());
        assert!(update(&f, b"a\0b").is_err());
    }
}
