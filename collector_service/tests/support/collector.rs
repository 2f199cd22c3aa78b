//! The collector binary as a child process for a test: its own counters on its own admin
//! port, killed or stopped as a real process is.

use std::process::{Child, Stdio};

use logagg::testsuite::TestContext;

/// Where the collector on `admin_port` writes its log (info and above), for a failing
/// test to show.
#[allow(dead_code)] // not every test binary shows it
pub fn collector_log(admin_port: u16) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("logagg-collector-{admin_port}.log"))
}

/// Starts the collector with `context`'s settings, its admin server on `admin_port`, and
/// `extra` environment variables on top (`LOGAGG__BROKER__URLS`, …).
pub fn start_collector_process_with(
    context: &TestContext,
    admin_port: u16,
    extra: &[(&str, String)],
) -> Child {
    context
        .service_command(env!("CARGO_BIN_EXE_collector_service"), admin_port)
        .env("LOGAGG__TELEMETRY__LOG_LEVEL", "info")
        .envs(extra.iter().map(|(key, value)| (*key, value.as_str())))
        .stdout(
            std::fs::File::create(collector_log(admin_port))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        )
        .spawn()
        .expect("collector process")
}
