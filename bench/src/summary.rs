//! Median and spread over repeated runs.

use serde::{Deserialize, Serialize};

/// The summary of one figure over the valid runs of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Half the range relative to the median, in percent: the table's `±x%`. Zero when the
    /// median is zero and all values agree; `None` (null) when the median is zero but not all
    /// values are.
    pub spread_pct: Option<f64>,
    pub n: usize,
}

impl Summary {
    /// Summarises `values`; `None` when there is no value.
    pub fn of(values: &[f64]) -> Option<Summary> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        let (min, max) = (v[0], v[n - 1]);
        let spread_pct = if median != 0.0 {
            Some((max - min) / 2.0 / median.abs() * 100.0)
        } else if min == max {
            Some(0.0)
        } else {
            None
        };
        Some(Summary {
            median,
            min,
            max,
            spread_pct,
            n,
        })
    }

    /// Summarises integer figures.
    pub fn of_u64(values: &[u64]) -> Option<Summary> {
        Summary::of(&values.iter().map(|&v| v as f64).collect::<Vec<_>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_count_takes_the_middle() {
        let s = Summary::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (3.0, 1.0, 5.0, 3));
        assert!((s.spread_pct.unwrap() - 200.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn even_count_averages_the_middle_two() {
        let s = Summary::of_u64(&[10, 40, 20, 30]).unwrap();
        assert_eq!(s.median, 25.0);
        assert_eq!(s.spread_pct, Some(60.0));
    }

    #[test]
    fn single_value_has_no_spread() {
        let s = Summary::of(&[7.0]).unwrap();
        assert_eq!((s.median, s.spread_pct), (7.0, Some(0.0)));
    }

    #[test]
    fn zero_median() {
        assert_eq!(Summary::of(&[0.0, 0.0]).unwrap().spread_pct, Some(0.0));
        assert_eq!(Summary::of(&[0.0, 0.0, 8.0]).unwrap().spread_pct, None);
        assert!(Summary::of(&[]).is_none());
    }
}
