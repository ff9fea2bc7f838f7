//! The progress line on stderr: one line rewritten in place on a terminal, one line per run
//! otherwise.

use std::cell::RefCell;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    tty: bool,
    enabled: bool,
    total: usize,
    state: RefCell<State>,
}

struct State {
    done: usize,
    current: String,
    last_draw: Option<Instant>,
}

impl Progress {
    pub fn new(total: usize, enabled: bool) -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            enabled,
            total,
            state: RefCell::new(State {
                done: 0,
                current: String::new(),
                last_draw: None,
            }),
        }
    }

    /// Starts the next run.
    pub fn begin(&self, what: String) {
        let mut s = self.state.borrow_mut();
        s.current = what;
        if self.enabled && !self.tty {
            eprintln!("[{}/{}] {}", s.done + 1, self.total, s.current);
        }
        s.last_draw = None;
    }

    /// Updates the status part of the line (terminal only, at most 5 times a second).
    pub fn status(&self, status: &str) {
        let mut s = self.state.borrow_mut();
        if !self.enabled || !self.tty {
            return;
        }
        if s.last_draw
            .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        s.last_draw = Some(Instant::now());
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K[{}/{}] {}: {status}",
            s.done + 1,
            self.total,
            s.current
        );
        let _ = err.flush();
    }

    /// Ends the current run with a one-word verdict.
    pub fn end(&self, verdict: &str) {
        let mut s = self.state.borrow_mut();
        s.done += 1;
        if !self.enabled {
            return;
        }
        if self.tty {
            eprint!("\r\x1b[2K");
            if verdict != "ok" {
                eprintln!("[{}/{}] {}: {verdict}", s.done, self.total, s.current);
            }
        } else if verdict != "ok" {
            eprintln!("    {verdict}");
        }
    }

    /// `"12.3 s / 60 s"`.
    pub fn elapsed_of(&self, elapsed: Duration, expected: Duration) -> String {
        if expected.is_zero() {
            format!("{:.1} s", elapsed.as_secs_f64())
        } else {
            format!(
                "{:.1} s / {:.0} s",
                elapsed.as_secs_f64(),
                expected.as_secs_f64()
            )
        }
    }
}
