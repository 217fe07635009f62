//! Progress bars on stderr for long commands (`enqueue --count`, `prune`, `triage retry
//! --all`, `torture`): a count, a percentage, the rate and an ETA, drawn only when
//! stderr is a terminal. Otherwise nothing is drawn at all, so scripts and `--json`
//! output stay byte-identical; a finished bar is cleared, leaving only the command's
//! usual output.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

/// A progress bar that exists only on a terminal.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar counting to `total` `unit`s, labelled `label`; hidden unless stderr is a
    /// terminal.
    pub fn new(label: &str, total: u64, unit: &str) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let template = format!(
            "{{msg}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} ({{percent}}%) {{rate}} ETA {{eta}}"
        );
        let unit_owned = unit.to_owned();
        let style = ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key(
                "rate",
                move |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                    let _ = write!(out, "{:.0} {unit_owned}/s", state.per_sec());
                },
            )
            .progress_chars("=> ");
        let bar = ProgressBar::new(total)
            .with_style(style)
            .with_message(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(250));
        Progress { bar: Some(bar) }
    }

    /// True when a bar is drawn (work done only to feed it can be skipped otherwise).
    pub fn is_visible(&self) -> bool {
        self.bar.is_some()
    }

    /// Sets how many units are done.
    pub fn set(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    /// Changes the total (when it is learnt after the start).
    pub fn set_total(&self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
