//! `/proc/<pid>/io`: what one process asked of the kernel, read before it is reaped.

use serde::Serialize;

/// The fields of `/proc/<pid>/io` that the bench reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProcIo {
    /// Bytes passed to write-like syscalls (`wchar`).
    pub wchar: u64,
    /// Write-like syscalls (`syscw`).
    pub syscw: u64,
    /// Bytes the process caused to be sent to storage (`write_bytes`, counted when dirtied).
    pub write_bytes: u64,
    /// Dirty bytes later truncated away before reaching storage.
    pub cancelled_write_bytes: u64,
}

impl ProcIo {
    /// Parses the `key: value` lines; unknown keys are ignored, missing ones read as zero.
    pub fn parse(text: &str) -> Result<ProcIo, String> {
        let mut io = ProcIo::default();
        let mut seen = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (key, value) = line
                .split_once(':')
                .ok_or_else(|| format!("bad line {line:?}"))?;
            let value: u64 = value
                .trim()
                .parse()
                .map_err(|_| format!("bad value in line {line:?}"))?;
            let slot = match key.trim() {
                "wchar" => &mut io.wchar,
                "syscw" => &mut io.syscw,
                "write_bytes" => &mut io.write_bytes,
                "cancelled_write_bytes" => &mut io.cancelled_write_bytes,
                _ => continue,
            };
            *slot = value;
            seen += 1;
        }
        if seen == 0 {
            return Err("no known field in /proc/<pid>/io".into());
        }
        Ok(io)
    }

    pub fn read(pid: i32) -> std::io::Result<ProcIo> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/io"))?;
        ProcIo::parse(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_format() {
        let text = "rchar: 10\nwchar: 10000000\nsyscr: 0\nsyscw: 1\nread_bytes: 0\n\
                    write_bytes: 10006528\ncancelled_write_bytes: 4096\n";
        let io = ProcIo::parse(text).unwrap();
        assert_eq!(
            io,
            ProcIo {
                wchar: 10_000_000,
                syscw: 1,
                write_bytes: 10_006_528,
                cancelled_write_bytes: 4096
            }
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(ProcIo::parse("").is_err());
        assert!(ProcIo::parse("wchar 12").is_err());
        assert!(ProcIo::parse("wchar: many").is_err());
    }
}
