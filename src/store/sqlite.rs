//! The embedded default: one SQLite file in WAL mode.
//!
//! SQLite allows one writer at a time; rather than let concurrent transactions collide and
//! retry on `SQLITE_BUSY`, all writes go through a pool of one connection (they queue in
//! the pool, in order), while reads use their own pool and never wait for a writer.

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    const BACKEND: &'static str = "sqlite";
    /// SQLite has one writer at a time, so a claim cannot race another: no row locks needed.
    const SKIP_LOCKED: &'static str = "";

    /// Opens (creating if missing) and migrates the database at `url` (`sqlite://PATH`).
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await?;
        Self::migrate_pool(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore { writer, reader })
    }

    pub async fn migrate_pool(pool: &SqlitePool) -> anyhow::Result<()> {
        MIGRATOR.run(pool).await?;
        Ok(())
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }
}

super::sql::impl_sql_store!(SqliteStore, sqlx::Sqlite);
