//! What a crash may leave: every state each file had, and the last state that a successful
//! `fsync` made durable.
//!
//! A test records a state *before* the operation that produces it (a killed daemon may or may
//! not have applied the operation in flight), and marks a file synced only after `fsync`
//! returned. After the crash, each file's content in the database must be one of its states
//! from the last synced one on ("present and whole"), and never anything else ("not torn").

use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
struct Track {
    /// `None`: the file did not exist.
    states: Vec<Option<Vec<u8>>>,
    /// Index of the first state the file may still be in after a crash.
    durable: usize,
}

#[derive(Clone, Debug, Default)]
pub struct History {
    tracks: BTreeMap<String, Track>,
}

impl History {
    /// Start from files known to be on disk (so durable).
    pub fn new(initial: &BTreeMap<String, Vec<u8>>) -> History {
        let tracks = initial
            .iter()
            .map(|(p, d)| {
                (
                    p.clone(),
                    Track {
                        states: vec![Some(d.clone())],
                        durable: 0,
                    },
                )
            })
            .collect();
        History { tracks }
    }

    /// The file may now have this state (`None`: removed).
    pub fn set(&mut self, path: &str, state: Option<Vec<u8>>) {
        let t = self.tracks.entry(path.to_owned()).or_insert_with(|| Track {
            states: vec![None],
            durable: 0,
        });
        t.states.push(state);
    }

    /// The newest state recorded for `path`.
    pub fn current(&self, path: &str) -> Option<&[u8]> {
        self.tracks
            .get(path)
            .and_then(|t| t.states.last())
            .and_then(|s| s.as_deref())
    }

    /// An `fsync` of `path` returned: its newest state is durable.
    pub fn synced(&mut self, path: &str) {
        if let Some(t) = self.tracks.get_mut(path) {
            t.durable = t.states.len() - 1;
        }
    }

    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.tracks.keys().map(String::as_str)
    }

    /// Judge what was found after a crash: every tracked file in an allowed state, nothing else.
    pub fn check(&self, found: &BTreeMap<String, Vec<u8>>) -> Result<(), String> {
        let mut errors = Vec::new();
        for (path, t) in &self.tracks {
            let got = found.get(path);
            let matches = |s: &Option<Vec<u8>>| s.as_ref() == got;
            if t.states[t.durable..].iter().any(matches) {
                continue;
            }
            let what = match got {
                None => "missing".to_owned(),
                Some(d) => format!("torn: {} bytes {:?}", d.len(), preview(d)),
            };
            if t.states[..t.durable].iter().any(matches) {
                errors.push(format!(
                    "{path}: {what} is a state from before its last fsync (state {} of {})",
                    t.durable,
                    t.states.len()
                ));
            } else {
                errors.push(format!(
                    "{path}: {what}, none of its {} states",
                    t.states.len()
                ));
            }
        }
        for (path, d) in found {
            if !self.tracks.contains_key(path) {
                errors.push(format!("{path}: never written, found {:?}", preview(d)));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }
}

fn preview(d: &[u8]) -> String {
    let s = String::from_utf8_lossy(&d[..d.len().min(48)]).into_owned();
    if d.len() > 48 {
        format!("{s}…")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(items: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
        items
            .iter()
            .map(|(p, d)| (p.to_string(), d.to_vec()))
            .collect()
    }

    #[test]
    fn any_state_after_the_last_fsync_is_fine() {
        let mut h = History::new(&map(&[("a", b"0")]));
        h.set("a", Some(b"1".to_vec()));
        h.synced("a");
        h.set("a", Some(b"2".to_vec()));
        assert!(h.check(&map(&[("a", b"1")])).is_ok());
        assert!(h.check(&map(&[("a", b"2")])).is_ok());
        let e = h.check(&map(&[("a", b"0")])).unwrap_err();
        assert!(e.contains("before its last fsync"), "{e}");
        let e = h.check(&map(&[])).unwrap_err();
        assert!(e.contains("a: missing"), "{e}");
    }

    #[test]
    fn torn_and_unknown_files_are_reported() {
        let mut h = History::default();
        h.set("t", Some(b"abc".to_vec()));
        assert!(
            h.check(&map(&[])).is_ok(),
            "never synced: absence is a state it had"
        );
        let e = h.check(&map(&[("t", b"ab")])).unwrap_err();
        assert!(e.contains("torn"), "{e}");
        let e = h.check(&map(&[("t", b"abc"), ("u", b"x")])).unwrap_err();
        assert!(e.contains("u: never written"), "{e}");
    }

    #[test]
    fn removal_is_a_state_too() {
        let mut h = History::new(&map(&[("tmp", b"new")]));
        h.synced("tmp");
        h.set("tmp", None);
        h.set("f", Some(b"new".to_vec()));
        assert!(h.check(&map(&[("f", b"new")])).is_ok());
        assert!(h.check(&map(&[("tmp", b"new")])).is_ok());
        assert_eq!(h.current("tmp"), None);
        assert_eq!(h.current("f"), Some(&b"new"[..]));
        assert_eq!(h.paths().collect::<Vec<_>>(), ["f", "tmp"]);
    }
}
