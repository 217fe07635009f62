//! `reproq torture` refuses any server but this machine's, judged after the `PG*`
//! fallbacks a DSN without a host goes through.

use sqlx::postgres::PgConnectOptions;

use crate::support::{TestDb, Variant, reproq, stderr, stdout};

#[test]
fn a_dsn_without_a_host_is_judged_by_where_pghost_sends_it() {
    for (dsn, env, origin) in [
        (
            "postgres://postgres@/postgres",
            vec![("PGHOST", "192.0.2.1")],
            "PGHOST",
        ),
        (
            "dbname=postgres user=postgres",
            vec![("PGHOST", "192.0.2.1")],
            "PGHOST",
        ),
        (
            "postgres://postgres@/postgres",
            vec![("PGHOST", "localhost"), ("PGHOSTADDR", "192.0.2.1")],
            "PGHOSTADDR",
        ),
    ] {
        let out = reproq(&["torture", "--count", "1", "--dsn", dsn], &env, None);
        assert_eq!(out.status.code(), Some(2), "{dsn} {env:?}: {out:?}");
        let text = stderr(&out);
        assert!(
            text.contains("loopback") && text.contains("192.0.2.1") && text.contains(origin),
            "{dsn} {env:?}: {text}"
        );
    }
}

#[tokio::test]
async fn a_local_server_reached_through_pghost_is_accepted() {
    let db = TestDb::new(Variant::Sql).await;
    let options: PgConnectOptions = db.url.parse().unwrap();
    let port = options.get_port().to_string();
    let dsn = format!(
        "postgres://{}@/{}",
        options.get_username(),
        options.get_database().unwrap()
    );
    let out = reproq(
        &["torture", "--count", "20", "--dsn", &dsn],
        &[("PGHOST", "127.0.0.1"), ("PGPORT", &port)],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains("Tasks: 20 total, 20 succeeded"),
        "{}",
        stdout(&out)
    );
}
