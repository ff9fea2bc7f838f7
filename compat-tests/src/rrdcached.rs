//! A private rrdcached for one test: Debian's daemon in the foreground, on its own socket and
//! base directory inside a temporary directory, stopped by its pid when the guard drops (so on
//! every exit path of the test, a panic included), and `rrdtool` run against it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running rrdcached. Dropping it stops it (SIGTERM, then SIGKILL after 5 s) and reaps it.
pub struct Rrdcached {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Rrdcached {
    /// Start `rrdcached -g` listening on `<dir>/rrdcached.sock`, writing files only under
    /// `base` (`-b base -B`), holding updates for an hour (`-w 3600`) so that a test sees
    /// whether a value went through the daemon, flushing everything when stopped (`-F`).
    pub fn start(dir: &Path, base: &Path) -> Rrdcached {
        std::fs::create_dir_all(base).unwrap();
        let socket = dir.join("rrdcached.sock");
        let log = dir.join("rrdcached.log");
        let child = Command::new("rrdcached")
            .arg("-g")
            .arg("-l")
            .arg(format!("unix:{}", socket.display()))
            .arg("-b")
            .arg(base)
            .arg("-B")
            .arg("-p")
            .arg(dir.join("rrdcached.pid"))
            .arg("-F")
            .args(["-w", "3600", "-f", "7200"])
            .arg("-o")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run rrdcached (Debian package rrdcached)");
        let d = Rrdcached { child, socket, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !d.socket.exists() {
            assert!(
                Instant::now() < deadline,
                "rrdcached did not open {} within 10 s; its log:\n{}",
                d.socket.display(),
                std::fs::read_to_string(&d.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The `--daemon` argument of rrdtool for this instance.
    pub fn address(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// Write what the daemon holds for `file` into it (`rrdtool flushcached`).
    pub fn flush(&self, file: &Path) {
        rrdtool(&["flushcached", "--daemon", &self.address(), path_str(file)]);
    }
}

impl Drop for Rrdcached {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return;
                }
            }
        }
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Run `rrdtool ARGS` and return its standard output; panic with its stderr if it fails.
pub fn rrdtool(args: &[&str]) -> String {
    let out = Command::new("rrdtool")
        .args(args)
        .output()
        .expect("cannot run rrdtool (Debian package rrdtool)");
    assert!(
        out.status.success(),
        "rrdtool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("rrdtool prints UTF-8")
}

/// `rrdtool info FILE` as (field, value) pairs in rrdtool's order.
pub fn info(file: &Path) -> Vec<(String, String)> {
    rrdtool(&["info", path_str(file)])
        .lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The value of one `rrdtool info` field.
pub fn field<'a>(info: &'a [(String, String)], name: &str) -> Option<&'a str> {
    info.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_lookup() {
        let i = vec![
            ("step".to_owned(), "60".to_owned()),
            ("ds[a].type".to_owned(), "\"GAUGE\"".to_owned()),
        ];
        assert_eq!(field(&i, "step"), Some("60"));
        assert_eq!(field(&i, "ds[a].type"), Some("\"GAUGE\""));
        assert_eq!(field(&i, "x"), None);
    }
}
