//! `/sys/block/<dev>/stat`: the block layer's own counters for one device.
//!
//! The fields are documented in the kernel's `Documentation/block/stat.rst`. Sectors are always
//! 512-byte units there, whatever the device's logical block size. Older kernels print 11 fields
//! (no discard), then 15 (no flush); both are accepted, missing counters read as zero.

use serde::Serialize;
use std::path::Path;

/// Bytes per sector in `/sys/block/*/stat`, fixed by the kernel ABI.
pub const SECTOR_BYTES: u64 = 512;

/// One reading of a block device's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DiskStat {
    pub read_ios: u64,
    pub read_sectors: u64,
    pub write_ios: u64,
    pub write_sectors: u64,
    pub discard_ios: u64,
    pub flush_ios: u64,
}

/// Why a stat line could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    TooFewFields(usize),
    NotANumber(String),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::TooFewFields(n) => write!(f, "stat line has {n} fields, expected >= 11"),
            ParseError::NotANumber(s) => write!(f, "stat field {s:?} is not a number"),
        }
    }
}

impl DiskStat {
    /// Parses the single line of `/sys/block/<dev>/stat`.
    pub fn parse(line: &str) -> Result<DiskStat, ParseError> {
        let fields = line
            .split_ascii_whitespace()
            .map(|f| {
                f.parse::<u64>()
                    .map_err(|_| ParseError::NotANumber(f.to_string()))
            })
            .collect::<Result<Vec<u64>, ParseError>>()?;
        if fields.len() < 11 {
            return Err(ParseError::TooFewFields(fields.len()));
        }
        let at = |i: usize| fields.get(i).copied().unwrap_or(0);
        Ok(DiskStat {
            read_ios: at(0),
            read_sectors: at(2),
            write_ios: at(4),
            write_sectors: at(6),
            discard_ios: at(11),
            flush_ios: at(15),
        })
    }

    /// Reads `/sys/block/<name>/stat` (name like `loop3`).
    pub fn read(sys_block: &Path, name: &str) -> std::io::Result<DiskStat> {
        let path = sys_block.join(name).join("stat");
        let text = std::fs::read_to_string(&path)?;
        DiskStat::parse(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    }

    /// Counters accumulated since `earlier`. Counters never go down while a device exists; a
    /// smaller value (device re-created) saturates at zero rather than wrapping.
    pub fn since(&self, earlier: &DiskStat) -> DiskStat {
        DiskStat {
            read_ios: self.read_ios.saturating_sub(earlier.read_ios),
            read_sectors: self.read_sectors.saturating_sub(earlier.read_sectors),
            write_ios: self.write_ios.saturating_sub(earlier.write_ios),
            write_sectors: self.write_sectors.saturating_sub(earlier.write_sectors),
            discard_ios: self.discard_ios.saturating_sub(earlier.discard_ios),
            flush_ios: self.flush_ios.saturating_sub(earlier.flush_ios),
        }
    }

    pub fn write_bytes(&self) -> u64 {
        self.write_sectors * SECTOR_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_17_field_line_of_current_kernels() {
        let line =
            "     120        3     4242       37     9001       12   123456     5000        0     \
                    4000     6000        2        0       16        1      77       30\n";
        let s = DiskStat::parse(line).unwrap();
        assert_eq!(s.read_ios, 120);
        assert_eq!(s.read_sectors, 4242);
        assert_eq!(s.write_ios, 9001);
        assert_eq!(s.write_sectors, 123456);
        assert_eq!(s.discard_ios, 2);
        assert_eq!(s.flush_ios, 77);
        assert_eq!(s.write_bytes(), 123456 * 512);
    }

    #[test]
    fn parses_old_11_field_lines_with_zero_flushes() {
        let s = DiskStat::parse("1 0 8 0 2 0 16 0 0 0 0").unwrap();
        assert_eq!(
            (s.write_ios, s.write_sectors, s.flush_ios, s.discard_ios),
            (2, 16, 0, 0)
        );
    }

    #[test]
    fn rejects_short_and_garbled_lines() {
        assert_eq!(DiskStat::parse("1 2 3"), Err(ParseError::TooFewFields(3)));
        assert!(matches!(
            DiskStat::parse("1 0 8 0 x 0 16 0 0 0 0"),
            Err(ParseError::NotANumber(s)) if s == "x"
        ));
        assert_eq!(DiskStat::parse(""), Err(ParseError::TooFewFields(0)));
    }

    #[test]
    fn delta_subtracts_and_saturates() {
        let a = DiskStat {
            write_sectors: 100,
            flush_ios: 3,
            ..Default::default()
        };
        let b = DiskStat {
            write_sectors: 164,
            flush_ios: 5,
            write_ios: 2,
            ..Default::default()
        };
        let d = b.since(&a);
        assert_eq!(d.write_sectors, 64);
        assert_eq!(d.write_bytes(), 64 * 512);
        assert_eq!(d.flush_ios, 2);
        assert_eq!(a.since(&b).write_sectors, 0);
    }
}
