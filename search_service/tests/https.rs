//! HTTPS on the public listeners: with `tls.cert_file` and `tls.key_file` set, search and
//! the ingest gateway serve TLS that a client verifying against the test's own CA accepts;
//! a client that does not trust that CA refuses the certificate, plain HTTP gets no answer,
//! and a certificate file that does not parse stops the listener naming the setting.

use std::time::Duration;

use logagg::testsuite::{free_port, wait_until, TestCertificates, TestContext};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

fn verifying_client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"))
        .build()
        .expect("client")
}

async fn answers(client: &reqwest::Client, url: &str) -> bool {
    client
        .get(url)
        .send()
        .await
        .is_ok_and(|response| response.status().is_success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_and_the_gateway_serve_https_a_verifying_client_trusts() {
    let mut context = TestContext::new("https").await;
    let directory = std::env::temp_dir().join(format!("logagg-https-{}", std::process::id()));
    let certificates = TestCertificates::new(&directory);
    context.settings.tls.cert_file = Some(certificates.cert_file.clone());
    context.settings.tls.key_file = Some(certificates.key_file.clone());
    let gateway_port = free_port();
    context.settings.gateway.listen = ([127, 0, 0, 1], gateway_port).into();
    let settings = context.settings.clone();
    let shutdown = CancellationToken::new();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let search_port = listener.local_addr().expect("address").port();
    let store = logagg::store::Database::connect(&settings.store, "https-search")
        .await
        .expect("client");
    let search = tokio::spawn(search_service::run(
        settings.clone(),
        search_service::Dependencies { store, listener },
        shutdown.clone(),
    ));
    let gateway = tokio::spawn(source_service::serve_gateway(
        settings.clone(),
        shutdown.clone(),
    ));

    let client = verifying_client(&certificates.ca_pem);
    let search_url = format!("https://127.0.0.1:{search_port}/api/v1/logs");
    assert!(
        wait_until(Duration::from_secs(30), || answers(&client, &search_url)).await,
        "search never answered over HTTPS"
    );
    // By name too: the certificate holds `localhost` as well as the address.
    let by_name = format!("https://localhost:{search_port}/api/v1/logs");
    let page: Value = client
        .get(&by_name)
        .send()
        .await
        .expect("GET by name")
        .json()
        .await
        .expect("JSON");
    assert!(page["logs"].is_array(), "{page}");

    // A client that does not trust the test CA refuses the certificate: verification is on.
    let stranger = reqwest::Client::builder().build().expect("client");
    let refused = stranger
        .get(&search_url)
        .send()
        .await
        .expect_err("untrusted");
    assert!(refused.is_connect(), "{refused:?}");
    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let plain = reqwest::get(format!("http://127.0.0.1:{search_port}/api/v1/logs")).await;
    assert!(
        plain
            .as_ref()
            .map_or(true, |response| !response.status().is_success()),
        "{plain:?}"
    );

    let gateway_url = format!("https://127.0.0.1:{gateway_port}/api/v1/logs");
    let record = json!({"service": "tls-web", "severity": "info", "message": "over TLS"});
    let mut accepted = None;
    for _ in 0..300 {
        if let Ok(response) = client.post(&gateway_url).json(&record).send().await {
            accepted = Some(response.status().as_u16());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(accepted, Some(202), "the gateway over HTTPS");
    let records = context
        .take_records(&context.settings.broker.storage_queue)
        .await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].message, "over TLS");

    shutdown.cancel();
    search.await.expect("task").expect("search stopped cleanly");
    gateway
        .await
        .expect("task")
        .expect("gateway stopped cleanly");
    let _ = std::fs::remove_dir_all(&directory);
    context.cleanup().await;
}

#[tokio::test]
async fn a_certificate_that_does_not_parse_stops_the_listener_naming_the_setting() {
    let directory = std::env::temp_dir().join(format!("logagg-bad-tls-{}", std::process::id()));
    let certificates = TestCertificates::new(&directory);
    std::fs::write(&certificates.cert_file, "not a certificate").expect("write");
    let tls = logagg::settings::TlsSettings {
        cert_file: Some(certificates.cert_file.clone()),
        key_file: Some(certificates.key_file.clone()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let error = logagg::http_server::serve(
        listener,
        axum::Router::new(),
        &tls,
        logagg::http_server::HangUp::Cancels,
        CancellationToken::new(),
    )
    .await
    .expect_err("a bad certificate");
    assert!(format!("{error:#}").contains("tls.cert_file"), "{error:#}");
    let _ = std::fs::remove_dir_all(&directory);
}
