//! The export's progress bar: drawn on stderr only when stderr is a
//! terminal (never into logs or pipes), hidden otherwise.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress(ProgressBar);

impl Progress {
    /// A bar over `total` records, or a hidden one.
    pub fn new(wanted: bool, total: u64) -> Progress {
        if !wanted || !std::io::stderr().is_terminal() {
            return Progress(ProgressBar::hidden());
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} records, {per_sec}, ETA {eta}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message("exporting");
        Progress(bar)
    }

    pub fn inc(&self) {
        self.0.inc(1);
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}
