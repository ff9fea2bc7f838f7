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

/// CPU time (user + system, all threads) of a process from the `stat` line of `/proc/<pid>/stat`,
/// in milliseconds; `ticks_per_s` is `sysconf(_SC_CLK_TCK)`.
pub fn parse_cpu_ms(stat: &str, ticks_per_s: u64) -> Option<f64> {
    // The command name (field 2) may hold spaces and parentheses: fields are counted after the
    // last `)`, where field 3 (state) comes first; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 * 1000.0 / ticks_per_s.max(1) as f64)
}

/// [`parse_cpu_ms`] of a live or zombie process.
pub fn cpu_ms(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    parse_cpu_ms(&stat, u64::try_from(tck).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_utime_plus_stime_after_the_name() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 5 0";
        assert_eq!(parse_cpu_ms(stat, 100), Some(3000.0));
        assert_eq!(parse_cpu_ms("4242 (x) S 1", 100), None);
    }

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
