//! The `lwcfs-probe` helper: one filesystem operation, run inside a daemon's namespaces as an
//! unprivileged user (`nsenter` + `setpriv`), with the exact errno reported back.
//!
//! Output: `ok\n` followed by the payload, or `err <errno>\n`. The exit code is 0 whenever the
//! operation ran (failed or not), 2 for a usage error.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};

/// What the probe reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok(Vec<u8>),
    Err(i32),
}

impl Outcome {
    pub fn errno(&self) -> Option<i32> {
        match self {
            Outcome::Ok(_) => None,
            Outcome::Err(e) => Some(*e),
        }
    }
}

/// Encode a result for stdout.
pub fn encode(r: std::io::Result<Vec<u8>>) -> Vec<u8> {
    match r {
        Ok(payload) => {
            let mut v = b"ok\n".to_vec();
            v.extend_from_slice(&payload);
            v
        }
        Err(e) => format!("err {}\n", e.raw_os_error().unwrap_or(-1)).into_bytes(),
    }
}

/// Decode what the probe printed.
pub fn decode(out: &[u8]) -> Result<Outcome, String> {
    if let Some(p) = out.strip_prefix(b"ok\n") {
        return Ok(Outcome::Ok(p.to_vec()));
    }
    let text = String::from_utf8_lossy(out);
    text.strip_prefix("err ")
        .and_then(|s| s.trim().parse().ok())
        .map(Outcome::Err)
        .ok_or_else(|| format!("probe printed {text:?}"))
}

/// Run one operation. `args` = `[op, path, extra...]`.
pub fn run(args: &[OsString]) -> Result<std::io::Result<Vec<u8>>, String> {
    let usage = || {
        "usage: lwcfs-probe read|readdir|stat|readlink|write|append|create|mkdir|unlink|rmdir|open-write|utime PATH [ARG]".to_owned()
    };
    let op = args.first().and_then(|s| s.to_str()).ok_or_else(usage)?;
    let path = args.get(1).ok_or_else(usage)?;
    let arg = args.get(2);
    let r = match op {
        "read" => fs::read(path),
        "readdir" => fs::read_dir(path).and_then(|it| {
            let mut names = it
                .map(|e| e.map(|e| e.file_name().as_bytes().to_vec()))
                .collect::<std::io::Result<Vec<_>>>()?;
            names.sort();
            Ok(names.join(&b'\n'))
        }),
        "stat" => fs::symlink_metadata(path)
            .map(|m| format!("{:o} {} {} {}", m.mode(), m.uid(), m.gid(), m.size()).into_bytes()),
        "readlink" => fs::read_link(path).map(|t| t.as_os_str().as_bytes().to_vec()),
        "write" | "append" => {
            let data = arg.ok_or_else(usage)?.as_bytes();
            let mut o = OpenOptions::new();
            if op == "write" {
                o.write(true).truncate(true);
            } else {
                o.append(true);
            }
            o.open(path)
                .and_then(|mut f| f.write_all(data))
                .map(|()| Vec::new())
        }
        "create" => OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(path)
            .map(|_| Vec::new()),
        "open-write" => OpenOptions::new()
            .write(true)
            .open(path)
            .map(|_| Vec::new()),
        "mkdir" => fs::DirBuilder::new()
            .mode(0o755)
            .create(path)
            .map(|()| Vec::new()),
        "unlink" => fs::remove_file(path).map(|()| Vec::new()),
        "rmdir" => fs::remove_dir(path).map(|()| Vec::new()),
        "utime" => {
            let secs: i64 = arg
                .and_then(|a| a.to_str())
                .and_then(|a| a.parse().ok())
                .ok_or_else(usage)?;
            let t = nix::sys::time::TimeSpec::new(secs, 0);
            nix::sys::stat::utimensat(
                None,
                path.as_os_str(),
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::FollowSymlink,
            )
            .map(|()| Vec::new())
            .map_err(std::io::Error::from)
        }
        _ => return Err(usage()),
    };
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        assert_eq!(
            decode(&encode(Ok(b"a\nb".to_vec()))).unwrap(),
            Outcome::Ok(b"a\nb".to_vec())
        );
        let e = std::io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(decode(&encode(Err(e))).unwrap(), Outcome::Err(libc::EACCES));
        assert!(decode(b"garbage").is_err());
        assert_eq!(Outcome::Err(2).errno(), Some(2));
    }

    #[test]
    fn runs_operations_on_a_local_directory() {
        let d = tempfile::tempdir().unwrap();
        let p = |s: &str| d.path().join(s).into_os_string();
        let run = |a: &[OsString]| run(a).unwrap();
        assert!(run(&["create".into(), p("f")]).is_ok());
        assert!(run(&["write".into(), p("f"), "hello".into()]).is_ok());
        assert!(run(&["append".into(), p("f"), "!".into()]).is_ok());
        assert_eq!(run(&["read".into(), p("f")]).unwrap(), b"hello!");
        assert_eq!(
            run(&["create".into(), p("f")]).unwrap_err().raw_os_error(),
            Some(libc::EEXIST)
        );
        assert!(run(&["mkdir".into(), p("d")]).is_ok());
        assert_eq!(run(&["readdir".into(), d.path().into()]).unwrap(), b"d\nf");
        assert!(run(&["utime".into(), p("f"), "1000".into()]).is_ok());
        assert_eq!(fs::metadata(p("f")).unwrap().mtime(), 1000);
        assert!(run(&["rmdir".into(), p("d")]).is_ok());
        assert!(run(&["unlink".into(), p("f")]).is_ok());
        assert_eq!(
            run(&["read".into(), p("f")]).unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
        assert!(super::run(&["nope".into(), p("f")]).is_err());
    }
}
