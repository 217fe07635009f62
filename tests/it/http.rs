//! The HTTP side end to end: a real in-process worker and server on port 0, a real
//! client (reqwest over rustls), certificates made by rcgen.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use reproq::events::EventBus;
use reproq::http::{self, HttpState, auth::Access};
use reproq::metrics::Metrics;
use reproq::runner::observer::Observer;
use reproq::shutdown::Shutdown;

use crate::support::{TestDb, Variant, insert, task, wait_for_status, worker, worker_args};

/// A running worker with its HTTP server.
struct Running {
    base: String,
    client: reqwest::Client,
    shutdown: Shutdown,
    stop: CancellationToken,
    worker: tokio::task::JoinHandle<reproq::runner::RunSummary>,
}

impl Running {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    async fn get_auth(&self, path: &str, auth: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .header("Authorization", auth)
            .send()
            .await
            .unwrap()
    }

    async fn finish(self) {
        self.shutdown.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.worker)
            .await
            .unwrap()
            .unwrap();
        self.stop.cancel();
    }
}

/// The server's timers: production values unless a test shortens them.
#[derive(Clone, Copy)]
struct Timers {
    /// `/events` keep-alive comments.
    ping: Duration,
    /// Database gauges' refresh.
    collect: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            ping: http::events::PING_INTERVAL,
            collect: http::collector::INTERVAL,
        }
    }
}

/// Starts a worker on `db` with `flags` (worker and metrics flags alike).
async fn start(db: &TestDb, flags: &[&str], client: reqwest::Client, scheme: &str) -> Running {
    start_with(db, flags, client, scheme, Timers::default()).await
}

/// [`start`] with `timers`.
async fn start_with(
    db: &TestDb,
    flags: &[&str],
    client: reqwest::Client,
    scheme: &str,
    timers: Timers,
) -> Running {
    let config = reproq::cli::parse_worker_config(&worker_args(db, flags)).unwrap();
    let metrics = Arc::new(Metrics::new());
    let events = Arc::new(EventBus::new());
    let shutdown = Shutdown::new();
    let stop = CancellationToken::new();
    let state = Arc::new(HttpState {
        pool: db.pool.clone(),
        follows: None,
        metrics: metrics.clone(),
        events: Some(events.clone()),
        access: Access::from_config(&config.metrics).unwrap(),
        tls: http::tls::acceptor(&config.metrics).unwrap(),
        draining: shutdown.stop.clone(),
        events_ping: timers.ping,
    });
    let listener = http::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    http::spawn(listener, state, stop.clone());
    http::collector::spawn_every(
        db.pool.clone(),
        metrics.clone(),
        timers.collect,
        stop.clone(),
    );
    let observer = Observer::new(Some(metrics), Some(events));
    let worker = worker(db, flags).await.with_observer(observer);
    let handle = tokio::spawn(worker.run(shutdown.clone()));
    Running {
        base: format!("{scheme}://127.0.0.1:{port}"),
        client,
        shutdown,
        stop,
        worker: handle,
    }
}

fn plain() -> reqwest::Client {
    reqwest::Client::builder().use_rustls_tls().build().unwrap()
}

fn jwt(alg: Algorithm, claims: serde_json::Value, secret: &str) -> String {
    let token = jsonwebtoken::encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    format!("Bearer {token}")
}

#[tokio::test]
async fn routes_methods_and_bodies() {
    let db = TestDb::new(Variant::Sql).await;
    let server = start(&db, &[], plain(), "http").await;

    let health = server.get("/healthz").await;
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(
        health.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(health.text().await.unwrap(), "ok");
    for path in ["/healthz", "/metrics", "/events"] {
        let url = format!("{}{path}", server.base);
        let head = server.client.head(&url).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::OK, "HEAD {path}");
        for method in [
            reqwest::Method::POST,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
        ] {
            let response = server
                .client
                .request(method.clone(), &url)
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(response.text().await.unwrap(), "");
        }
    }
    let head = server
        .client
        .head(format!("{}/events", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["content-type"], "text/event-stream");
    assert_eq!(head.headers()["cache-control"], "no-cache");

    for path in ["/", "/healthz/", "/metrics/x", "/nope"] {
        let response = server.get(path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(response.text().await.unwrap(), "404 page not found\n");
    }
    let response = server.get("/events?task_id=abc").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.text().await.unwrap(), "invalid task_id");

    let metrics = server.get("/metrics").await;
    assert_eq!(
        metrics.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(
        metrics
            .text()
            .await
            .unwrap()
            .contains("# TYPE reproq_queue_depth gauge")
    );
    let gzipped = server
        .client
        .get(format!("{}/metrics", server.base))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let bytes = gzipped.bytes().await.unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
        .unwrap();
    assert!(text.contains("reproq_workers"));
    server.finish().await;
}

#[tokio::test]
async fn every_auth_outcome_and_the_limiter() {
    let db = TestDb::new(Variant::Sql).await;
    let secret = "s3cret-token";
    let server = start(
        &db,
        &["--metrics-auth-token", secret, "--metrics-auth-limit", "6"],
        plain(),
        "http",
    )
    .await;
    let later = chrono::Utc::now().timestamp() + 3600;
    let good = json!({"sub": "1", "superuser": true, "iss": "reproq-django", "aud": "reproq-tui", "exp": later});

    // Six failures, each 401 `unauthorized`.
    let failures = [
        server.get("/metrics").await,
        server.get_auth("/metrics", "Bearer wrong").await,
        server
            .get_auth("/metrics", &jwt(Algorithm::HS256, json!({"superuser": true, "aud": "reproq-tui", "exp": 1000}), secret))
            .await,
        server
            .get_auth("/metrics", &jwt(Algorithm::HS256, json!({"superuser": true, "aud": "someone-else", "exp": later}), secret))
            .await,
        // {"alg":"none"} with the good claims and no signature.
        server
            .get_auth("/metrics", "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdXBlcnVzZXIiOnRydWUsImF1ZCI6InJlcHJvcS10dWkifQ.")
            .await,
        server.get_auth("/metrics", &jwt(Algorithm::HS512, good.clone(), secret)).await,
    ];
    for (i, response) in failures.into_iter().enumerate() {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "failure {i}");
        assert!(response.headers().get("www-authenticate").is_none());
        assert_eq!(response.text().await.unwrap(), "unauthorized");
    }
    // Good credentials pass, and never touch the limiter.
    let ok = server
        .get_auth("/healthz", &format!("bearer {secret}"))
        .await;
    assert_eq!(ok.status(), StatusCode::OK);
    let ok = server
        .get_auth("/metrics", &jwt(Algorithm::HS256, good.clone(), secret))
        .await;
    assert_eq!(ok.status(), StatusCode::OK);
    // The seventh failure in the window is rate limited.
    let limited = server.get_auth("/healthz", "Bearer nope").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.text().await.unwrap(), "rate limited");
    let ok = server
        .get_auth("/events?task_id=1", &format!("Bearer {secret}"))
        .await;
    assert_eq!(ok.status(), StatusCode::OK, "a good token still passes");
    drop(ok);
    server.finish().await;
}

#[tokio::test]
async fn jwt_without_exp_is_refused_unless_allowed() {
    let secret = "s3cret-token";
    let no_exp =
        json!({"sub": "1", "superuser": true, "iss": "reproq-django", "aud": "reproq-tui"});
    let token = jwt(Algorithm::HS256, no_exp, secret);
    for (extra, expected) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("--metrics-auth-allow-no-exp"), StatusCode::OK),
        (
            Some("--metrics-auth-allow-no-exp=false"),
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        let db = TestDb::new(Variant::Sql).await;
        let mut flags = vec!["--metrics-auth-token", secret];
        flags.extend(extra);
        let server = start(&db, &flags, plain(), "http").await;
        let response = server.get_auth("/metrics", &token).await;
        assert_eq!(response.status(), expected, "{extra:?}");
        server.finish().await;
    }
}

#[tokio::test]
async fn allow_list_is_checked_before_the_token() {
    let db = TestDb::new(Variant::Sql).await;
    let server = start(
        &db,
        &[
            "--metrics-auth-token",
            "tok",
            "--metrics-allow-cidrs",
            "10.0.0.0/8, 192.168.0.1",
            "--metrics-auth-limit",
            "1",
        ],
        plain(),
        "http",
    )
    .await;
    let denied = server.get_auth("/healthz", "Bearer tok").await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert_eq!(denied.text().await.unwrap(), "forbidden");
    let limited = server.get_auth("/healthz", "Bearer tok").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(server.get("/nope").await.status(), StatusCode::NOT_FOUND);
    server.finish().await;

    let db = TestDb::new(Variant::Sql).await;
    let server = start(
        &db,
        &["--metrics-allow-cidrs", "localhost"],
        plain(),
        "http",
    )
    .await;
    assert_eq!(server.get("/healthz").await.status(), StatusCode::OK);
    server.finish().await;
}

struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client_pem: String,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["client".to_owned()]).unwrap();
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("cert.pem"), server.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), server_key.serialize_pem()).unwrap();
    Pki {
        ca_pem: ca.pem(),
        client_pem: format!("{}{}", client.pem(), client_key.serialize_pem()),
        dir,
    }
}

#[tokio::test]
async fn tls_and_mutual_tls() {
    let pki = pki();
    let path = |name: &str| pki.dir.path().join(name).display().to_string();
    let (cert, key, ca) = (path("cert.pem"), path("key.pem"), path("ca.pem"));
    let trusting = || {
        reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
    };

    let db = TestDb::new(Variant::Sql).await;
    let flags = ["--metrics-tls-cert", &cert, "--metrics-tls-key", &key];
    let server = start(&db, &flags, trusting().build().unwrap(), "https").await;
    let response = server.get("/healthz").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "ok");
    assert!(
        plain()
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .is_err(),
        "untrusted"
    );
    server.finish().await;

    let db = TestDb::new(Variant::Sql).await;
    let flags = [
        "--metrics-tls-cert",
        &cert,
        "--metrics-tls-key",
        &key,
        "--metrics-tls-client-ca",
        &ca,
        "--metrics-auth-token",
        "tok",
    ];
    let identity = reqwest::Identity::from_pem(pki.client_pem.as_bytes()).unwrap();
    let server = start(
        &db,
        &flags,
        trusting().identity(identity).build().unwrap(),
        "https",
    )
    .await;
    assert_eq!(
        server.get_auth("/healthz", "Bearer tok").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        server.get("/healthz").await.status(),
        StatusCode::UNAUTHORIZED,
        "bearer still applies"
    );
    let anonymous = trusting().build().unwrap();
    let refused = anonymous
        .get(format!("{}/healthz", server.base))
        .header("Authorization", "Bearer tok")
        .send()
        .await;
    assert!(refused.is_err(), "no client certificate: {refused:?}");
    server.finish().await;
}

#[test]
fn tls_settings_errors_are_the_go_messages() {
    let db_url = "postgres://a@b/c";
    let config =
        reproq::cli::parse_worker_config(&["--dsn", db_url, "--metrics-tls-client-ca", "/x"])
            .unwrap();
    assert_eq!(
        http::tls::acceptor(&config.metrics)
            .err()
            .unwrap()
            .to_string(),
        "metrics TLS requires both cert and key"
    );
    let config = reproq::cli::parse_worker_config(&[
        "--dsn",
        db_url,
        "--metrics-tls-cert",
        "/nope/c.pem",
        "--metrics-tls-key",
        "/nope/k.pem",
    ])
    .unwrap();
    assert!(
        http::tls::acceptor(&config.metrics)
            .err()
            .unwrap()
            .to_string()
            .starts_with("load metrics TLS cert/key: ")
    );
}

/// Reads SSE chunks until `done` says so, or fails after `seconds`.
async fn read_until(
    response: &mut reqwest::Response,
    buffer: &mut String,
    seconds: u64,
    done: impl Fn(&str) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(seconds), async {
        while !done(buffer) {
            let chunk = response
                .chunk()
                .await
                .unwrap()
                .expect("the stream stays open");
            buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("stream never matched; got:\n{buffer}"));
}

fn events_of(buffer: &str) -> Vec<serde_json::Value> {
    buffer
        .split("\n\n")
        .filter_map(|frame| frame.strip_prefix("data: "))
        .map(|json| serde_json::from_str(json).unwrap())
        .collect()
}

#[tokio::test]
async fn events_stream_filters_by_queue_and_keeps_alive_with_pings() {
    let db = TestDb::new(Variant::Sql).await;
    let timers = Timers {
        ping: Duration::from_millis(200),
        ..Timers::default()
    };
    let flags = ["--queues", "default,other"];
    let server = start_with(&db, &flags, plain(), "http", timers).await;
    let mut stream = server.get("/events?queue=other").await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");

    let ignored = insert(&db.pool, task("tasks.ok", json!({}))).await;
    let watched = insert(
        &db.pool,
        crate::support::NewTask {
            queue: "other".into(),
            ..task("tasks.ok", json!({}))
        },
    )
    .await;
    wait_for_status(&db.pool, ignored, "SUCCESSFUL", 30).await;
    let mut buffer = String::new();
    read_until(&mut stream, &mut buffer, 30, |b| b.contains("task_success")).await;
    let events = events_of(&buffer);
    assert_eq!(
        events
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["task_started", "task_success"]
    );
    let success = &events[1];
    assert_eq!(success["task_id"], watched);
    assert_eq!(success["queue"], "other");
    assert_eq!(success["level"], "info");
    assert_eq!(success["msg"], "task completed");
    assert_eq!(success["worker_id"], "test-worker");
    assert_eq!(success["metadata"]["task_path"], "tasks.ok");
    assert_eq!(success["metadata"]["attempt"], "1");
    assert_eq!(success["metadata"]["max_attempts"], "3");

    // An idle stream gets `: ping` comments (every 15 s in production, injected 200 ms
    // here) that keep proxies' read timeouts from closing it, and stays open for events.
    buffer.clear();
    read_until(&mut stream, &mut buffer, 20, |b| {
        b.matches(": ping\n\n").count() >= 3
    })
    .await;
    let failing = insert(
        &db.pool,
        crate::support::NewTask {
            queue: "other".into(),
            max_attempts: 2,
            ..task("tasks.fail", json!({"message": "boom"}))
        },
    )
    .await;
    read_until(&mut stream, &mut buffer, 30, |b| b.contains("task_retry")).await;
    let retry = events_of(&buffer)
        .into_iter()
        .find(|e| e["type"] == "task_retry")
        .unwrap();
    assert_eq!(retry["task_id"], failing);
    assert_eq!(retry["level"], "warn");
    assert_eq!(retry["metadata"]["exception_class"], "ValueError");
    assert_eq!(retry["metadata"]["error_message"], "boom");
    assert!(retry["metadata"]["next_run"].as_str().is_some());
    assert!(buffer.matches(": ping\n\n").count() >= 3, "{buffer}");

    // A new subscriber gets the history replayed, filtered.
    let mut replay = server.get(&format!("/events?task_id={watched}")).await;
    let mut history = String::new();
    read_until(&mut replay, &mut history, 10, |b| {
        b.contains("task_success")
    })
    .await;
    assert!(events_of(&history).iter().all(|e| e["task_id"] == watched));
    drop((stream, replay));
    server.finish().await;
}

fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_move_while_tasks_run() {
    let db = TestDb::new(Variant::Sql).await;
    let timers = Timers {
        collect: Duration::from_millis(200),
        ..Timers::default()
    };
    let server = start_with(&db, &["--concurrency", "2"], plain(), "http", timers).await;
    let before = server.get("/metrics").await.text().await.unwrap();
    for name in [
        "reproq_worker_cpu_usage_percent",
        "reproq_worker_mem_usage_bytes",
        "reproq_db_pool_connections_in_use",
        "reproq_db_pool_wait_count_total",
        "reproq_queue_depth",
        "reproq_tasks_running",
        "reproq_workers",
        "reproq_concurrency_in_use",
        "reproq_concurrency_limit",
        "reproq_queues_paused",
        "reproq_concurrency_blocked_tasks",
        "process_resident_memory_bytes",
    ] {
        assert!(
            before.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{before}"
        );
    }
    let ok = insert(&db.pool, task("tasks.ok", json!({}))).await;
    let slow = insert(&db.pool, task("tasks.sleep", json!({"seconds": 2}))).await;
    wait_for_status(&db.pool, ok, "SUCCESSFUL", 30).await;
    wait_for_status(&db.pool, slow, "RUNNING", 30).await;
    // The collector runs every 200 ms here (5 s in production); wait for it to see the
    // running task (and only it: an earlier pass may still count the finished one).
    let mut during = String::new();
    for _ in 0..40 {
        during = server.get("/metrics").await.text().await.unwrap();
        if sample(&during, "reproq_tasks_running ") == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(sample(&during, "reproq_tasks_running "), 1.0, "{during}");
    assert_eq!(sample(&during, "reproq_workers "), 1.0);
    assert_eq!(sample(&during, "reproq_concurrency_limit "), 2.0);
    wait_for_status(&db.pool, slow, "SUCCESSFUL", 30).await;
    let after = server.get("/metrics").await.text().await.unwrap();
    let success = r#"reproq_tasks_processed_total{queue="default",status="success"} "#;
    assert_eq!(sample(&before, success), 0.0);
    assert_eq!(sample(&after, success), 2.0, "{after}");
    assert_eq!(
        sample(
            &after,
            r#"reproq_tasks_completed_total{queue="default",status="success"} "#
        ),
        2.0
    );
    assert_eq!(
        sample(&after, r#"reproq_tasks_claimed_total{queue="default"} "#),
        2.0
    );
    assert_eq!(
        sample(
            &after,
            r#"reproq_exec_duration_seconds_count{queue="default"} "#
        ),
        2.0
    );
    assert!(
        sample(
            &after,
            r#"reproq_exec_duration_seconds_sum{queue="default"} "#
        ) >= 2.0
    );
    assert_eq!(
        sample(
            &after,
            r#"reproq_queue_wait_duration_seconds_count{queue="default"} "#
        ),
        2.0
    );
    assert!(
        sample(
            &after,
            r#"reproq_claim_duration_seconds_count{queue="default"} "#
        ) >= 2.0
    );
    assert_eq!(
        sample(
            &after,
            r#"reproq_db_operation_duration_seconds_count{operation="complete_success"} "#
        ),
        2.0
    );
    assert!(
        !after.contains(r#"status="failure""#),
        "no phantom statuses"
    );
    server.finish().await;
}

#[tokio::test]
async fn healthz_is_503_while_draining() {
    let db = TestDb::new(Variant::Sql).await;
    let server = start(&db, &[], plain(), "http").await;
    let slow = insert(&db.pool, task("tasks.sleep", json!({"seconds": 3}))).await;
    wait_for_status(&db.pool, slow, "RUNNING", 30).await;
    assert_eq!(server.get("/healthz").await.status(), StatusCode::OK);
    server.shutdown.stop.cancel();
    let draining = server.get("/healthz").await;
    assert_eq!(draining.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(draining.text().await.unwrap(), "draining");
    wait_for_status(&db.pool, slow, "SUCCESSFUL", 30).await;
    server.finish().await;
}

#[tokio::test]
async fn worker_binary_survives_a_taken_port_and_validate_warns() {
    let db = TestDb::new(Variant::Sql).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut args = worker_args(&db, &["--burst", "--metrics-addr", &addr]);
    args.insert(0, "worker");
    let output = crate::support::reproq(&args, &[], None);
    let stdout = crate::support::stdout(&output);
    assert!(
        output.status.success(),
        "{stdout}{}",
        crate::support::stderr(&output)
    );
    assert!(stdout.contains("Metrics server error"), "{stdout}");

    let mut validate = args.clone();
    validate.push("--validate");
    let output = crate::support::reproq(&validate, &[], None);
    let stdout = crate::support::stdout(&output);
    assert!(
        stdout.contains(&format!("warning: metrics address {addr} cannot be bound")),
        "{stdout}"
    );

    let output = crate::support::reproq(
        &args,
        &[
            ("LOW_MEMORY_MODE", "yes"),
            ("REPROQ_MEMORY_LOG_INTERVAL", "1s"),
        ],
        None,
    );
    let stdout = crate::support::stdout(&output);
    assert!(
        stdout.contains("Low memory mode enabled; metrics/health/events disabled"),
        "{stdout}"
    );
    assert!(stdout.contains("Skipping metrics server due to low memory mode"));
    assert!(stdout.contains("\"rss_bytes\":"), "{stdout}");
    drop(taken);
}

#[tokio::test]
async fn pool_mode_reports_its_runners() {
    let db = TestDb::new(Variant::Sql).await;
    let server = start(
        &db,
        &[
            "--executor-mode",
            "pool",
            "--concurrency",
            "2",
            "--pool-max-tasks",
            "1",
        ],
        plain(),
        "http",
    )
    .await;
    let ids = [
        insert(&db.pool, task("tasks.ok", json!({}))).await,
        insert(&db.pool, task("tasks.ok", json!({}))).await,
        insert(&db.pool, task("tasks.sleep", json!({"seconds": 6}))).await,
    ];
    wait_for_status(&db.pool, ids[2], "RUNNING", 30).await;
    let mut text = String::new();
    for _ in 0..40 {
        text = server.get("/metrics").await.text().await.unwrap();
        if sample(&text, "reproq_pool_busy_children ") >= 1.0
            && sample(&text, r#"reproq_pool_recycles_total{reason="max_tasks"} "#) >= 1.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(sample(&text, "reproq_pool_children ") >= 1.0, "{text}");
    assert_eq!(sample(&text, "reproq_pool_busy_children "), 1.0, "{text}");
    assert!(
        sample(&text, r#"reproq_pool_recycles_total{reason="max_tasks"} "#) >= 1.0,
        "{text}"
    );
    assert!(
        sample(&text, "reproq_pool_child_start_seconds ") > 0.0,
        "{text}"
    );
}
