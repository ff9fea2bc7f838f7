//! Logging through `tracing`: plain lines on stderr without colours or timestamps (journald
//! adds both), the level switchable at run time through `/etc/pve/.debug`.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

static HANDLE: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

fn filter(debug: bool) -> EnvFilter {
    EnvFilter::new(if debug { "debug" } else { "info" })
}

pub fn init(debug: bool) {
    let (layer, handle) = reload::Layer::new(filter(debug));
    let fmt = fmt::layer()
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_writer(std::io::stderr);
    if tracing_subscriber::registry()
        .with(layer)
        .with(fmt)
        .try_init()
        .is_ok()
    {
        let _ = HANDLE.set(handle);
    }
}

pub fn set_debug(debug: bool) {
    if let Some(h) = HANDLE.get() {
        let _ = h.modify(|f| *f = filter(debug));
    }
}
