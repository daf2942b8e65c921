//! A fresh PostgreSQL database per test, on the server named by `COCREATE_TEST_POSTGRES_URL`.
//!
//! `.ci/run` starts a throwaway cluster and sets the variable (scripts/test_postgres.sh). Without
//! it a PostgreSQL test fails with [`HOW_TO_RUN`]: these tests are never skipped.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;

/// The variable naming the server (a URL of a database the tests may `CREATE DATABASE` from).
pub const URL_VAR: &str = "COCREATE_TEST_POSTGRES_URL";

/// What a test without a server says.
pub const HOW_TO_RUN: &str = "the PostgreSQL queue tests need a PostgreSQL server: run \
    `eval \"$(scripts/test_postgres.sh)\" && cargo test` (starts a throwaway cluster on \
    127.0.0.1:55432 and sets COCREATE_TEST_POSTGRES_URL), or set \
    COCREATE_TEST_POSTGRES_URL=postgres://USER@HOST:PORT/postgres to a server where USER may \
    CREATE DATABASE";

/// The server's URL; panics with [`HOW_TO_RUN`] when it is not set.
pub fn server_url() -> String {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!("{URL_VAR} is not set: {HOW_TO_RUN}"),
    }
}

/// `url` with its database replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("COCREATE_TEST_POSTGRES_URL is not a URL");
    parsed.set_path(&format!("/{database}"));
    parsed.to_string()
}

/// Creates an empty database for one test and returns its URL.
pub async fn fresh_database() -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let server = server_url();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!(
        "cocreate_test_{}_{}_{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn = sqlx::PgConnection::connect(&server)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {URL_VAR}: {e}; {HOW_TO_RUN}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    conn.close().await.ok();
    with_database(&server, &name)
}
