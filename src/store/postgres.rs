//! Scale-out: PostgreSQL, shared by any number of `jitgate serve` replicas.

use sqlx::postgres::{PgPool, PgPoolOptions};
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    const BACKEND: &'static str = "postgres";
    /// Replicas claiming at once each take other rows instead of waiting on the same ones.
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";

    /// Connects to and migrates the database at `url`. sqlx takes an advisory lock while
    /// migrating, so replicas starting together migrate once.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(PgStore { pool })
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }
}

super::sql::impl_sql_store!(PgStore, sqlx::Postgres);
