//! Versioned schema migrations, applied in order inside one transaction each.
//! A migration, once released, is never edited: add a new file instead.

use rusqlite::Connection;

use super::StoreError;

/// `(version, sql)`, ascending. The version is what `user_version` becomes.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("migrations/0001_init.sql")),
    (2, include_str!("migrations/0002_collect_requests.sql")),
    (3, include_str!("migrations/0003_register.sql")),
    (4, include_str!("migrations/0004_webhooks.sql")),
    (5, include_str!("migrations/0005_roles.sql")),
    (6, include_str!("migrations/0006_tlog.sql")),
    (7, include_str!("migrations/0007_as_of.sql")),
    (8, include_str!("migrations/0008_audit_log.sql")),
];

pub const LATEST: u32 = 8;

pub fn migrate(conn: &mut Connection) -> Result<u32, StoreError> {
    let current: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > LATEST {
        return Err(StoreError::TooNew { found: current, supported: LATEST });
    }
    for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let fail = |source| StoreError::Migration { version, source };
        let tx = conn.transaction().map_err(fail)?;
        tx.execute_batch(sql).map_err(fail)?;
        tx.pragma_update(None, "user_version", version).map_err(fail)?;
        tx.commit().map_err(fail)?;
    }
    Ok(LATEST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), LATEST);
        // Idempotent: a second run applies nothing and fails nothing.
        assert_eq!(migrate(&mut conn).unwrap(), LATEST);
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0))
            .unwrap();
        assert!(tables >= 10, "{tables}");
        conn.pragma_update(None, "user_version", LATEST + 1).unwrap();
        assert!(matches!(migrate(&mut conn), Err(StoreError::TooNew { .. })));
    }
}
