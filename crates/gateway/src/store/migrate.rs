//! Schema migrations: one list per dialect, applied in order, each in its own
//! transaction and recorded by name, so a database only ever moves forward.

use sqlx::Executor;

use super::{Backend, Result, Store};

const SQLITE: &[(&str, &str)] = &[
    ("0001_init", include_str!("../../migrations/sqlite/0001_init.sql")),
    ("0002_webhooks", include_str!("../../migrations/sqlite/0002_webhooks.sql")),
    ("0003_routing", include_str!("../../migrations/sqlite/0003_routing.sql")),
    ("0004_open_tasks_by_key", include_str!("../../migrations/sqlite/0004_open_tasks_by_key.sql")),
    ("0010_accounts", include_str!("../../migrations/sqlite/0010_accounts.sql")),
    ("0020_attempt_retry", include_str!("../../migrations/sqlite/0020_attempt_retry.sql")),
    ("0030_key_open_tasks", include_str!("../../migrations/sqlite/0030_key_open_tasks.sql")),
    ("0031_drop_open_tasks_by_key", include_str!("../../migrations/sqlite/0031_drop_open_tasks_by_key.sql")),
    ("0032_ascending_task_indexes", include_str!("../../migrations/sqlite/0032_ascending_task_indexes.sql")),
];
const POSTGRES: &[(&str, &str)] = &[
    ("0001_init", include_str!("../../migrations/postgres/0001_init.sql")),
    ("0002_webhooks", include_str!("../../migrations/postgres/0002_webhooks.sql")),
    ("0003_routing", include_str!("../../migrations/postgres/0003_routing.sql")),
    ("0004_open_tasks_by_key", include_str!("../../migrations/postgres/0004_open_tasks_by_key.sql")),
    ("0010_accounts", include_str!("../../migrations/postgres/0010_accounts.sql")),
    ("0020_attempt_retry", include_str!("../../migrations/postgres/0020_attempt_retry.sql")),
    ("0030_key_open_tasks", include_str!("../../migrations/postgres/0030_key_open_tasks.sql")),
    ("0031_drop_open_tasks_by_key", include_str!("../../migrations/postgres/0031_drop_open_tasks_by_key.sql")),
    ("0032_ascending_task_indexes", include_str!("../../migrations/postgres/0032_ascending_task_indexes.sql")),
];

impl Store {
    /// True when the schema has been created here before (a `vidgate` command
    /// pointed at the wrong folder must not make a second, empty database).
    #[tracing::instrument(skip_all)]
    pub async fn is_initialised(&self) -> Result<bool> {
        let sql = match self.backend {
            Backend::Sqlite => "SELECT 1 AS one FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
            Backend::Postgres => {
                "SELECT 1 AS one FROM information_schema.tables WHERE table_name = 'schema_migrations'"
            }
        };
        Ok(sqlx::query(sql).fetch_optional(&self.write).await?.is_some())
    }

    /// Applies the migrations this database has not seen yet, each in a transaction.
    #[tracing::instrument(skip_all)]
    pub async fn migrate(&self) -> Result<()> {
        let migrations = match self.backend {
            Backend::Sqlite => SQLITE,
            Backend::Postgres => POSTGRES,
        };
        self.write
            .execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations \
                 (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .await?;
        for (name, sql) in migrations {
            let mut tx = self.write.begin().await?;
            let done = sqlx::query("SELECT 1 FROM schema_migrations WHERE name = $1")
                .bind(*name)
                .fetch_optional(&mut *tx)
                .await?;
            if done.is_some() {
                continue;
            }
            tx.execute(*sql).await?;
            sqlx::query("INSERT INTO schema_migrations (name, applied_at) VALUES ($1, $2)")
                .bind(*name)
                .bind(crate::util::now_ms())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }
}
