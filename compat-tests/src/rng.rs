//! A small seeded pseudo-random generator (xorshift64*), so that a failing randomised test
//! prints a seed and can be replayed with it.

use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Zero is the one state xorshift never leaves.
        Rng((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The seed from the environment variable `var` if set, else from the clock. Returns the
    /// seed too, for the failure message.
    pub fn from_env_or_clock(var: &str) -> (Rng, u64) {
        let seed = match std::env::var(var) {
            Ok(s) => s
                .parse()
                .unwrap_or_else(|_| panic!("{var}={s:?} is not a u64")),
            Err(_) => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1),
        };
        (Rng::new(seed), seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(hi > lo, "empty range {lo}..{hi}");
        lo + self.next_u64() % (hi - lo)
    }

    /// True with probability `num/den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.range(0, den) < num
    }

    /// `len` bytes that are printable (so a torn file is readable in a failure message), and
    /// start with `tag` so that every state written by a test is distinct.
    pub fn text(&mut self, tag: &str, len: usize) -> Vec<u8> {
        let mut v = tag.as_bytes().to_vec();
        while v.len() < len {
            v.push(b'a' + (self.next_u64() % 26) as u8);
        }
        v.truncate(len.max(tag.len()));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_ranges_hold() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        for _ in 0..1000 {
            let x = a.range(3, 9);
            assert_eq!(x, b.range(3, 9));
            assert!((3..9).contains(&x));
        }
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }

    #[test]
    fn text_has_tag_and_length() {
        let mut r = Rng::new(7);
        let t = r.text("v12:", 40);
        assert_eq!(t.len(), 40);
        assert!(t.starts_with(b"v12:"));
        assert!(t[4..].iter().all(u8::is_ascii_lowercase));
        assert_eq!(r.text("long-tag", 3), b"long-tag");
    }
}
