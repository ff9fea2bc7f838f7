//! Human-readable figures for the terminal table (decimal units, as `iotop` and the issue use).

/// `1234567` → `"1.23 MB"`; below 1000 the exact byte count.
pub fn bytes(v: f64) -> String {
    let abs = v.abs();
    let (div, unit) = if abs >= 1e9 {
        (1e9, "GB")
    } else if abs >= 1e6 {
        (1e6, "MB")
    } else if abs >= 1e3 {
        (1e3, "KB")
    } else {
        return format!("{} B", v.round() as i64);
    };
    let x = v / div;
    if x.abs() >= 100.0 {
        format!("{x:.0} {unit}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1} {unit}")
    } else {
        format!("{x:.2} {unit}")
    }
}

/// A ratio like `2675×` or `0.42×`.
pub fn ratio(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v >= 100.0 {
        format!("{v:.0}×")
    } else if v >= 10.0 {
        format!("{v:.1}×")
    } else {
        format!("{v:.2}×")
    }
}

/// A count or rate: `22013` → `"22.0 k"`.
pub fn count(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v.abs() >= 1e4 {
        format!("{:.1} k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        format!("{v:.1}")
    }
}

/// Seconds with one decimal: `1.5 s`.
pub fn secs(ms: f64) -> String {
    format!("{:.1} s", ms / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(0.0), "0 B");
        assert_eq!(bytes(999.0), "999 B");
        assert_eq!(bytes(21_900.0), "21.9 KB");
        assert_eq!(bytes(946_000.0), "946 KB");
        assert_eq!(bytes(2_800_000_000.0), "2.80 GB");
        assert_eq!(ratio(2675.3), "2675×");
        assert_eq!(ratio(11.49), "11.5×");
        assert_eq!(ratio(f64::NAN), "-");
        assert_eq!(count(22_013.0), "22.0 k");
        assert_eq!(count(12.0), "12");
        assert_eq!(secs(1500.0), "1.5 s");
    }
}
