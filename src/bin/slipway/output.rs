//! Everything the CLI prints goes through here. A closed pipe
//! (`slipway status | head -1`) ends the writing, not the run: the exit code
//! stays the one the outcome deserves, and nothing panics. Any other write
//! error is ignored alike — there is nowhere left to report it. Every text is
//! redacted on its way out. Also the log lines, the spinner and the panic
//! message, which reach stderr through the same writer.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use std::io::IsTerminal;
use std::time::Duration;

use slipway::{redact, Report};

static REPORT_PRINTED: AtomicBool = AtomicBool::new(false);

fn write(mut stream: impl Write, text: &str) {
    let text = slipway::redact::redact(text);
    let _ = stream
        .write_all(text.as_bytes())
        .and_then(|()| stream.flush());
}

/// Text on stdout.
pub fn out(text: &str) {
    write(std::io::stdout().lock(), text);
}

/// Text on stderr.
pub fn err(text: &str) {
    write(std::io::stderr().lock(), text);
}

/// A JSON document on stdout, on its own line.
pub fn json(text: &str) {
    REPORT_PRINTED.store(true, Ordering::SeqCst);
    out(&format!("{text}\n"));
}

/// The report as JSON on stdout.
pub fn report_json(report: &Report) {
    json(&report.to_json());
}

/// Whether the one JSON report has been printed.
pub fn report_printed() -> bool {
    REPORT_PRINTED.load(Ordering::SeqCst)
}

/// While `work` runs, a spinner on stderr with the time so far — only on a
/// terminal, so pipes and CI logs see none of it. What runs is also in
/// `pg_stat_activity.application_name` (`slipway: <migration>`).
pub async fn with_spinner(action: &str, work: impl std::future::Future<Output = Report>) -> Report {
    if !std::io::stderr().is_terminal() {
        return work.await;
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} slipway {msg} ({elapsed})")
    {
        spinner.set_style(style);
    }
    spinner.set_message(action.to_owned());
    spinner.enable_steady_tick(Duration::from_millis(120));
    let report = work.await;
    spinner.finish_and_clear();
    report
}

/// A panic prints a fixed sentence, where, and the message with every
/// password blanked — never the raw message, which may quote a URL.
pub fn panic_hook(info: &std::panic::PanicHookInfo<'_>) {
    let payload = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_default();
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
    err(&panic_message(&payload, location.as_deref()));
}

fn panic_message(payload: &str, location: Option<&str>) -> String {
    format!(
        "slipway: internal error, a bug in slipway ({}): {}; check the database with `slipway status` and report the bug\n",
        location.unwrap_or("unknown location"),
        redact::redact(payload)
    )
}

/// Log lines on stderr: `-v` info, `-vv` debug, or `SLIPWAY_LOG`.
pub fn init_logging(verbose: u8) {
    use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
    use tracing_subscriber::util::SubscriberInitExt as _;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLIPWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // The engine logs the error a run ends with; the CLI prints it in the
    // report (human text or JSON) already, and once is enough.
    let not_in_report = tracing_subscriber::filter::filter_fn(|meta| {
        !(meta.target() == "slipway::engine"
            && *meta.level() == tracing::Level::ERROR
            && meta.fields().field("code").is_some())
    });
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(|| LossyStderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_filter(filter)
        .with_filter(not_in_report);
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// stderr for log lines, redacted like every other output, and quiet about
/// a closed pipe.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        err(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_message_is_redacted() {
        let text = panic_message(
            "called `Result::unwrap()` on an `Err` value: bad url postgresql://app:hunter2@db/tutor (password=hunter2)",
            Some("src/main.rs:1:1"),
        );
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("postgresql://app:****@db/tutor"), "{text}");
        assert!(
            text.starts_with("slipway: internal error, a bug in slipway (src/main.rs:1:1)"),
            "{text}"
        );
        let text = panic_message("", None);
        assert!(text.contains("unknown location"), "{text}");
    }
}
