//! The line format between the IPC tests and `lwcfs-ipcc script` (which runs inside the
//! daemon's namespaces, possibly as another user), and the operation mix of `hammer`.
//!
//! Commands: `call <hex request>` (header included, sent as is), `send <hex request>` (no
//! wait), `reconnect`, `exit` (leave without disconnecting). Results: `reply <id> <error>
//! <hex payload>` (`-` for an empty payload), `fail <errno>` (transport), `sent`,
//! `connected`, `connect-failed <errno>`.

use std::io;

use super::{request, Reply};

pub fn hex(b: &[u8]) -> String {
    if b.is_empty() {
        return "-".to_owned();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if s == "-" {
        return Ok(Vec::new());
    }
    if s.len() % 2 != 0 {
        return Err(format!("odd hex length {}", s.len()));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Call(Vec<u8>),
    Send(Vec<u8>),
    Reconnect,
    Exit,
}

impl Command {
    pub fn line(&self) -> String {
        match self {
            Command::Call(m) => format!("call {}", hex(m)),
            Command::Send(m) => format!("send {}", hex(m)),
            Command::Reconnect => "reconnect".to_owned(),
            Command::Exit => "exit".to_owned(),
        }
    }
}

pub fn parse_command(line: &str) -> Result<Command, String> {
    let mut it = line.split_whitespace();
    match (it.next(), it.next()) {
        (Some("call"), Some(h)) => Ok(Command::Call(unhex(h)?)),
        (Some("send"), Some(h)) => Ok(Command::Send(unhex(h)?)),
        (Some("reconnect"), None) => Ok(Command::Reconnect),
        (Some("exit"), None) => Ok(Command::Exit),
        _ => Err("unknown command".to_owned()),
    }
}

pub fn result_line(r: io::Result<Reply>) -> String {
    match r {
        Ok(r) => format!("reply {} {} {}", r.id, r.error, hex(&r.payload)),
        Err(e) => format!("fail {}", e.raw_os_error().unwrap_or(0)),
    }
}

/// One result line as the tests see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Reply(Reply),
    /// Transport failure (errno).
    Fail(i32),
    Sent,
    Connected,
    ConnectFailed(i32),
}

pub fn parse_result(line: &str) -> Result<Outcome, String> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let num = |s: &str| s.parse::<i32>().map_err(|e| format!("{line:?}: {e}"));
    match f.as_slice() {
        ["reply", id, err, h] => Ok(Outcome::Reply(Reply {
            id: num(id)?,
            error: num(err)?,
            payload: unhex(h)?,
        })),
        ["fail", e] => Ok(Outcome::Fail(num(e)?)),
        ["sent"] => Ok(Outcome::Sent),
        ["connected"] => Ok(Outcome::Connected),
        ["connect-failed", e] => Ok(Outcome::ConnectFailed(num(e)?)),
        _ => Err(format!("unexpected result line {line:?}")),
    }
}

/// The requests `hammer` repeats, each with whether it must succeed: every operation a busy
/// node sees, reads and writes, on `config` (a file that exists).
pub fn hammer_mix(config: &str) -> Vec<(Vec<u8>, bool)> {
    let name = |k: &[u8], len: usize| {
        let mut v = k.to_vec();
        v.resize(len, 0);
        v
    };
    let mut set = name(b"kv/hammer", 256);
    set.extend_from_slice(b"value\0");
    let mut get = name(b"kv/hammer", 256);
    get.extend(name(b"", 256));
    let mut path = config.as_bytes().to_vec();
    path.push(0);
    let log = [&[6u8, 5, 7][..], b"root\0hammer\0load test\0"].concat();
    let mut get_log = vec![0u8; 16];
    get_log.extend_from_slice(b"\0");
    let mut prop = 0u32.to_le_bytes().to_vec();
    prop.extend_from_slice(b"lock\0");
    vec![
        (request(1, b""), true),
        (request(2, b""), true),
        (request(3, b""), true),
        (request(4, &set), true),
        (request(5, &get), true),
        (request(6, &path), true),
        (request(6, &path), true),
        (request(1, b""), true),
        (request(7, &log), true),
        (request(8, &get_log), true),
        (request(10, b""), true),
        (request(11, &prop), true),
        (request(12, b"nobody@pve!x 0\0"), false),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        for c in [
            Command::Call(request(6, b"x\0")),
            Command::Send(vec![]),
            Command::Reconnect,
            Command::Exit,
        ] {
            assert_eq!(parse_command(&c.line()).unwrap(), c);
        }
        let r = Reply {
            id: 6,
            error: -2,
            payload: vec![],
        };
        assert_eq!(
            parse_result(&result_line(Ok(r.clone()))).unwrap(),
            Outcome::Reply(r)
        );
        assert_eq!(parse_result("fail 104").unwrap(), Outcome::Fail(104));
        assert!(parse_result("what").is_err());
    }
}
