//! A libqb IPC client (Debian's `libqb`, `-lqb`), the way Proxmox's PVE::IPCC talks to
//! `pve2`: `qb_ipcc_connect(name, 1 MiB)`, then one `qb_ipcc_sendv_recv` per request with an
//! infinite timeout. The only `unsafe` of this crate.
//!
//! Requests are built by [`request`] (16-byte header + payload); replies are split into the
//! 24-byte header's `error` and the payload.

pub mod script;

/// Request payloads as PVE::IPCC packs them.
pub mod req {
    pub fn padded(s: &[u8], len: usize) -> Vec<u8> {
        let mut v = s.to_vec();
        v.resize(len, 0);
        v
    }

    /// Perl `pack("Z[256]Z*", key, value)` (value with its NUL), or the bare name.
    pub fn set_status(key: &[u8], value: &[u8]) -> Vec<u8> {
        [padded(key, 256), value.to_vec()].concat()
    }

    /// `pack("Z[256]Z[256]", key, node)`.
    pub fn get_status(key: &[u8], node: &[u8]) -> Vec<u8> {
        [padded(key, 256), padded(node, 256)].concat()
    }

    /// `pack("CCCZ*Z*Z*", prio, len(ident)+1, len(tag)+1, ident, tag, msg)`.
    pub fn log_msg(prio: u8, ident: &[u8], tag: &[u8], msg: &[u8]) -> Vec<u8> {
        let mut p = vec![prio, ident.len() as u8 + 1, tag.len() as u8 + 1];
        for s in [ident, tag, msg] {
            p.extend_from_slice(s);
            p.push(0);
        }
        p
    }

    /// `pack("VVVVZ*", max, 0, 0, 0, user)`.
    pub fn get_log(max: u32, user: &[u8]) -> Vec<u8> {
        let mut p = max.to_le_bytes().to_vec();
        p.extend_from_slice(&[0; 12]);
        p.extend_from_slice(user);
        p.push(0);
        p
    }
}

use std::ffi::{c_void, CString};
use std::io;

#[repr(C)]
struct QbIpcc {
    _opaque: [u8; 0],
}

#[link(name = "qb")]
extern "C" {
    fn qb_ipcc_connect(name: *const libc::c_char, max_msg_size: usize) -> *mut QbIpcc;
    fn qb_ipcc_disconnect(c: *mut QbIpcc);
    fn qb_ipcc_send(c: *mut QbIpcc, msg: *const c_void, len: usize) -> isize;
    fn qb_ipcc_sendv_recv(
        c: *mut QbIpcc,
        iov: *const libc::iovec,
        iov_len: u32,
        res: *mut c_void,
        res_len: usize,
        ms_timeout: i32,
    ) -> isize;
}

/// The Perl client's buffer size (`IPCC.xs`: `PCS_MAX_MSG_SIZE`).
pub const MAX_MSG: usize = 1 << 20;
pub const RESPONSE_HEADER: usize = 24;

/// A request: `id`, `size` = 16 + payload, then the payload.
pub fn request(id: i32, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; 16];
    m[0..4].copy_from_slice(&id.to_le_bytes());
    m[8..12].copy_from_slice(&((16 + payload.len()) as i32).to_le_bytes());
    m.extend_from_slice(payload);
    m
}

/// A reply: `error` (0 or −errno) and the payload (empty on error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub id: i32,
    pub error: i32,
    pub payload: Vec<u8>,
}

impl Reply {
    /// The payload of a successful reply, else `Err(errno)`.
    pub fn ok(self) -> Result<Vec<u8>, i32> {
        if self.error == 0 {
            Ok(self.payload)
        } else {
            Err(-self.error)
        }
    }
}

/// One connection.
pub struct Client {
    conn: *mut QbIpcc,
    buf: Vec<u8>,
}

// The connection is used by one thread at a time (it is moved, never shared).
// SAFETY: libqb keeps no thread-local state for a client connection.
unsafe impl Send for Client {}

impl Client {
    /// `qb_ipcc_connect(name, 1 MiB)`.
    ///
    /// # Errors
    /// The errno libqb leaves when the connection fails or is refused.
    pub fn connect(name: &str) -> io::Result<Client> {
        let cname =
            CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `cname` is a valid C string for the duration of the call.
        let conn = unsafe { qb_ipcc_connect(cname.as_ptr(), MAX_MSG) };
        if conn.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(Client {
            conn,
            buf: vec![0; MAX_MSG],
        })
    }

    /// Send `id` with `payload` (a well-formed header) and wait for the reply.
    ///
    /// # Errors
    /// Transport errors of libqb (`EMSGSIZE`, `ENOTCONN`, …).
    pub fn call(&mut self, id: i32, payload: &[u8]) -> io::Result<Reply> {
        self.call_raw(&request(id, payload))
    }

    /// Send `msg` exactly as given (header included, whatever it claims) and wait.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn call_raw(&mut self, msg: &[u8]) -> io::Result<Reply> {
        let iov = [libc::iovec {
            iov_base: msg.as_ptr() as *mut c_void,
            iov_len: msg.len(),
        }];
        // SAFETY: `conn` is live; `iov` points at `msg` for the call; `buf` is writable for
        // its whole length.
        let n = unsafe {
            qb_ipcc_sendv_recv(
                self.conn,
                iov.as_ptr(),
                1,
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                -1,
            )
        };
        if n < 0 {
            return Err(io::Error::from_raw_os_error(-n as i32));
        }
        let n = n as usize;
        if n < RESPONSE_HEADER {
            return Err(io::Error::other(format!("short reply of {n} bytes")));
        }
        let b = &self.buf[..n];
        let i32_at = |o: usize| i32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let size = i32_at(8);
        if size as usize != n {
            return Err(io::Error::other(format!(
                "reply header says {size} bytes, got {n}"
            )));
        }
        Ok(Reply {
            id: i32_at(0),
            error: i32_at(16),
            payload: b[RESPONSE_HEADER..].to_vec(),
        })
    }

    /// Send without waiting for the reply (a client that goes away mid-request).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn send_only(&mut self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: `conn` is live; `msg` is readable for its length.
        let n = unsafe { qb_ipcc_send(self.conn, msg.as_ptr().cast(), msg.len()) };
        if n < 0 {
            return Err(io::Error::from_raw_os_error(-n as i32));
        }
        Ok(())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // SAFETY: `conn` is live and disconnected exactly once.
        unsafe { qb_ipcc_disconnect(self.conn) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_header_layout() {
        let r = request(6, b"a\0");
        assert_eq!(r.len(), 18);
        assert_eq!(&r[0..4], &6i32.to_le_bytes());
        assert_eq!(&r[4..8], &[0; 4]);
        assert_eq!(&r[8..12], &18i32.to_le_bytes());
        assert_eq!(&r[16..], b"a\0");
    }

    #[test]
    fn reply_ok_maps_errors() {
        let r = Reply {
            id: 1,
            error: -2,
            payload: vec![],
        };
        assert_eq!(r.ok(), Err(2));
    }
}
