//! A gateway served in the test's own process, on free ports.

use std::time::Duration;

use logagg::settings::Settings;
use logagg::testsuite::{free_port, wait_until};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running `serve_gateway`; [`stop`](ServedGateway::stop) it before the test's cleanup.
pub struct ServedGateway {
    /// Base URL of its HTTP listener.
    pub url: String,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl ServedGateway {
    /// Serves `settings`' gateway with its HTTP and OTLP listeners moved to free ports
    /// (written back to `settings`), once its `/ready` answers.
    pub async fn start(settings: &mut Settings) -> ServedGateway {
        let port = free_port();
        settings.gateway.listen = ([127, 0, 0, 1], port).into();
        settings.otlp.listen = ([127, 0, 0, 1], free_port()).into();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(source_service::serve_gateway(
            settings.clone(),
            shutdown.clone(),
        ));
        let url = format!("http://127.0.0.1:{port}");
        let ready = wait_until(Duration::from_secs(30), || async {
            reqwest::get(format!("{url}/ready"))
                .await
                .is_ok_and(|response| response.status().is_success())
        })
        .await;
        assert!(ready, "the gateway never became ready");
        ServedGateway {
            url,
            shutdown,
            task,
        }
    }

    /// Shuts the gateway down and waits until it has stopped cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("task")
            .expect("the gateway stopped cleanly");
    }
}
