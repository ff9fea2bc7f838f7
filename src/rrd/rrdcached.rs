//! A client of rrdcached's text protocol over its unix socket: the `UPDATE` command that C
//! sends through librrd's `rrdc_update`, with one connection kept open between updates (as
//! librrd keeps it) and a timeout on every read and write (librrd has none, so a stuck daemon
//! would block C's status mutex for good).
//!
//! Protocol (rrdcached(1)): one command per line, fields separated by spaces, a space or
//! backslash inside a field escaped with a backslash (as librrd's client does); the answer's
//! first line starts with a status number, negative for an error, otherwise the number of
//! lines that follow (`0 errors, enqueued 1 value(s).` for an update).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Reads and writes wait at most this long for the daemon.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// An update rrdcached did not take, or a connection that failed mid-way.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to rrdcached at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rrdcached connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("rrdcached: {0}")]
    Daemon(String),
    #[error("rrdcached sent a malformed answer: {0:?}")]
    Protocol(String),
    #[error("update {0:?} cannot be sent: only printable ASCII without spaces is an update")]
    BadValue(String),
}

impl Error {
    /// The daemon itself is unreachable or misbehaving (as opposed to refusing one update):
    /// worth not asking it again for a while.
    pub fn is_daemon_down(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. } | Error::Io(_) | Error::Protocol(_)
        )
    }
}

pub struct Client {
    path: PathBuf,
    timeout: Duration,
    conn: Option<BufReader<UnixStream>>,
}

impl Client {
    /// A client of the daemon listening on `path`; nothing is connected yet.
    pub fn new(path: PathBuf) -> Client {
        Client::with_timeout(path, TIMEOUT)
    }

    /// A client whose reads and writes wait at most `timeout` (tests use short ones).
    pub fn with_timeout(path: PathBuf, timeout: Duration) -> Client {
        Client {
            path,
            timeout,
            conn: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Connect unless connected (C: `rrdc_connect` before every update).
    pub fn connect(&mut self) -> Result<(), Error> {
        if self.conn.is_some() {
            return Ok(());
        }
        let s = UnixStream::connect(&self.path).map_err(|source| Error::Connect {
            path: self.path.clone(),
            source,
        })?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        self.conn = Some(BufReader::new(s));
        Ok(())
    }

    /// Drop the connection (C: `rrdc_disconnect` after a failed update).
    pub fn disconnect(&mut self) {
        self.conn = None;
    }

    /// `UPDATE <file> <update>`; connects first if needed. Any error leaves the client
    /// disconnected, so the next call starts afresh.
    pub fn update(&mut self, file: &Path, update: &[u8]) -> Result<(), Error> {
        let r = self.try_update(file, update);
        if r.is_err() {
            self.disconnect();
        }
        r
    }

    fn try_update(&mut self, file: &Path, update: &[u8]) -> Result<(), Error> {
        if update.is_empty() || !update.iter().all(|b| b.is_ascii_graphic()) {
            return Err(Error::BadValue(
                String::from_utf8_lossy(update).into_owned(),
            ));
        }
        let file = file.as_os_str().as_bytes();
        if file.iter().any(|b| b.is_ascii_control()) {
            return Err(Error::BadValue(String::from_utf8_lossy(file).into_owned()));
        }
        self.connect()?;
        let conn = self.conn.as_mut().expect("connected above");
        let mut line = b"UPDATE ".to_vec();
        escape_into(file, &mut line);
        line.push(b' ');
        escape_into(update, &mut line);
        line.push(b'\n');
        conn.get_mut().write_all(&line)?;
        let mut answer = String::new();
        if conn.read_line(&mut answer)? == 0 {
            return Err(Error::Protocol("connection closed".into()));
        }
        let (status, msg) = parse_status(&answer)?;
        if status < 0 {
            return Err(Error::Daemon(msg.to_owned()));
        }
        // Not expected for UPDATE; read them so the stream stays in step.
        for _ in 0..status {
            let mut more = String::new();
            if conn.read_line(&mut more)? == 0 {
                return Err(Error::Protocol("connection closed".into()));
            }
        }
        Ok(())
    }
}

/// `<status> <message>\n`.
fn parse_status(line: &str) -> Result<(i64, &str), Error> {
    let line = line.trim_end_matches(['\n', '\r']);
    let (num, msg) = line.split_once(' ').unwrap_or((line, ""));
    let status = num
        .parse::<i64>()
        .map_err(|_| Error::Protocol(line.to_owned()))?;
    Ok((status, msg))
}

/// A field as librrd's client writes it: space and backslash escaped with a backslash.
fn escape_into(field: &[u8], out: &mut Vec<u8>) {
    for &b in field {
        if b == b' ' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn escaping_and_status_lines() {
        let mut v = Vec::new();
        escape_into(b"/a b\\c", &mut v);
        assert_eq!(v, b"/a\\ b\\\\c");
        assert_eq!(
            parse_status("0 errors, enqueued 1 value(s).\n").unwrap(),
            (0, "errors, enqueued 1 value(s).")
        );
        assert_eq!(
            parse_status("-1 No such file\n").unwrap(),
            (-1, "No such file")
        );
        assert!(parse_status("garbage\n").is_err());
    }

    /// Against a fake daemon: the exact request line, an error answer, a reconnect.
    #[test]
    fn update_talks_the_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for answer in ["0 errors, enqueued 1 value(s).\n", "-1 illegal attempt\n"] {
                let (s, _) = listener.accept().unwrap();
                let mut r = BufReader::new(s);
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                r.get_mut().write_all(answer.as_bytes()).unwrap();
                seen.push(line);
            }
            seen
        });
        let mut c = Client::new(sock);
        c.update(Path::new("/db/pve-node-9.0/n 1"), b"1700000000:1:U")
            .unwrap();
        assert!(c.is_connected());
        c.disconnect();
        let e = c.update(Path::new("/db/x"), b"1:2").unwrap_err();
        assert!(
            matches!(e, Error::Daemon(ref m) if m == "illegal attempt"),
            "{e}"
        );
        assert!(!c.is_connected());
        assert_eq!(
            server.join().unwrap(),
            [
                "UPDATE /db/pve-node-9.0/n\\ 1 1700000000:1:U\n",
                "UPDATE /db/x 1:2\n"
            ]
        );
        // Values that would break the line protocol never reach the socket.
        assert!(matches!(
            c.update(Path::new("/db/x"), b"1:2\nFLUSHALL"),
            Err(Error::BadValue(_))
        ));
        assert!(matches!(
            c.update(Path::new("/db/x"), b""),
            Err(Error::BadValue(_))
        ));
        // Nobody listening any more.
        assert!(matches!(
            c.update(Path::new("/db/x"), b"1:2"),
            Err(Error::Connect { .. })
        ));
    }
}
