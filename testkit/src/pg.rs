//! A PostgreSQL database per test on the machine's server
//! (`HERD_TEST_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/postgres).

use sea_orm::{ConnectionTrait, Database};

pub fn pg_admin_url() -> String {
    std::env::var("HERD_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of its own, dropped (`WITH (FORCE)`, closing whatever still uses it) when
/// this value is, also when the test fails.
#[derive(Debug)]
pub struct TempPgDb {
    name: String,
    url: String,
}

impl TempPgDb {
    /// `prefix` says whose database it is when one is left behind (`herd_api`, …).
    pub async fn create(prefix: &str) -> Self {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(pg_admin_url()).await.expect("PostgreSQL for tests must be reachable");
        admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await.expect("create test database");
        admin.close().await.ok();
        let admin_url = pg_admin_url();
        let (base, _) = admin_url.rsplit_once('/').expect("postgres url has a database");
        Self { url: format!("{base}/{name}"), name }
    }

    /// The connection URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TempPgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A fresh runtime on its own thread: Drop cannot await, and the test's runtime
        // may be gone or panicking.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                if let Ok(db) = Database::connect(pg_admin_url()).await {
                    let _ = db.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
                }
            });
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exists(name: &str) -> bool {
        let admin = Database::connect(pg_admin_url()).await.unwrap();
        let row = admin
            .query_one_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT 1 AS one FROM pg_database WHERE datname = $1",
                [name.into()],
            ))
            .await
            .unwrap();
        row.is_some()
    }

    #[tokio::test]
    async fn created_and_dropped() {
        let db = TempPgDb::create("herd_testkit").await;
        let name = db.name().to_owned();
        let conn = Database::connect(db.url()).await.expect("the database accepts connections");
        conn.execute_unprepared("CREATE TABLE t (x int)").await.unwrap();
        assert!(exists(&name).await);
        drop(db); // while `conn` is still open: FORCE closes it
        assert!(!exists(&name).await, "{name} left behind");
    }
}
