//! `slipway local start|stop`: the embedded throw-away PostgreSQL of
//! `--local`, under `.slipway/local/`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use slipway::credentials::start_local;
use slipway::{Error, Report};
use slipway_local::LocalCluster;

use crate::{output, Cli, LocalCommand};

/// The folder of the embedded server, relative to the working directory.
pub fn local_dir() -> PathBuf {
    Path::new(".slipway").join("local")
}

pub async fn local_command(cli: &Cli, command: &LocalCommand) -> ExitCode {
    let started = Instant::now();
    let (action, outcome) = match command {
        LocalCommand::Start => ("local start", local_start(cli).await.map(Some)),
        LocalCommand::Stop => (
            "local stop",
            LocalCluster::stop_dir(&local_dir())
                .map_err(Error::from)
                .map(|stopped| {
                    if !cli.json {
                        let what = if stopped {
                            "stopped the local PostgreSQL"
                        } else {
                            "no local PostgreSQL was running"
                        };
                        output::out(&format!("{what} under {}\n", local_dir().display()));
                    }
                    None
                }),
        ),
    };
    let mut report = Report::new(action, false);
    match outcome {
        Ok(url) => {
            report.success = true;
            report.schema_valid = true;
            if let Some(url) = url {
                report.database = Some(cli.local_database.clone());
                if !cli.json {
                    output::out(&format!("{url}\n"));
                }
                report.url = Some(url);
            }
        }
        Err(e) => report.fail(&e),
    }
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    print_side_report(cli, &report)
}

/// Start (or reuse) the local server and its database; its URL.
async fn local_start(cli: &Cli) -> Result<String, Error> {
    let cluster = start_local(local_dir()).await?;
    cluster.ensure_database(&cli.local_database).await?;
    Ok(cluster.url(&cli.local_database))
}

/// The commands without a report of their own in human mode (`local`,
/// `snapshot`) print their text as they go; here the JSON report, or the
/// error on one line on stderr, and the exit code.
pub fn print_side_report(cli: &Cli, report: &Report) -> ExitCode {
    if cli.json {
        output::report_json(report);
    } else if let Some(error) = &report.error {
        output::err(&format!("slipway: {}\n", error.message));
    }
    ExitCode::from(report.exit_code())
}
