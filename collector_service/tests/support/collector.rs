//! The collector binary as a child process for a test: its own counters on its own admin
//! port, killed or stopped as a real process is.

use std::process::{Child, Command, Stdio};

use logagg::testsuite::TestContext;

/// Starts the collector with `context`'s settings, its admin server on `admin_port`, and
/// `extra` environment variables on top (`LOGAGG__BROKER__URLS`, …).
pub fn start_collector_process_with(
    context: &TestContext,
    admin_port: u16,
    extra: &[(&str, String)],
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_collector_service"))
        .envs(context.env_vars())
        .env("LOGAGG__TELEMETRY__LOG_LEVEL", "warn")
        .env(
            "LOGAGG__TELEMETRY__ADMIN_LISTEN",
            format!("127.0.0.1:{admin_port}"),
        )
        .envs(extra.iter().map(|(key, value)| (*key, value.as_str())))
        .stdout(Stdio::null())
        .spawn()
        .expect("collector process")
}
