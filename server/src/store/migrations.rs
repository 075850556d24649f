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
    (9, include_str!("migrations/0009_security_events.sql")),
];

pub const LATEST: u32 = 9;

pub fn migrate(conn: &mut Connection) -> Result<u32, StoreError> {
    migrate_to(conn, LATEST)
}

/// Applies the migrations up to `last` (tests stop early to write rows of
/// an older schema).
fn migrate_to(conn: &mut Connection, last: u32) -> Result<u32, StoreError> {
    let current: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > LATEST {
        return Err(StoreError::TooNew { found: current, supported: LATEST });
    }
    for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current && *v <= last) {
        let fail = |source| StoreError::Migration { version, source };
        let tx = conn.transaction().map_err(fail)?;
        tx.execute_batch(sql).map_err(fail)?;
        tx.pragma_update(None, "user_version", version).map_err(fail)?;
        tx.commit().map_err(fail)?;
    }
    Ok(last)
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

    #[test]
    fn version_8_security_events_are_kept_as_events_of_count_one() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate_to(&mut conn, 8).unwrap(), 8);
        conn.execute_batch(
            "INSERT INTO security_events (at, agent_id, kind, detail) VALUES
                 (100, 'a1', 'refused_record', 'signature does not verify'),
                 (200, NULL, 'policy_rejected', 'policy.toml:6: unknown key')",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        type Row = (i64, String, String, Option<String>, i64, i64, i64, String);
        let rows: Vec<Row> = conn
            .prepare("SELECT id, kind, source, agent_id, first_at, last_at, count, detail FROM security_events ORDER BY id")
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (
                    1,
                    "refused_record".into(),
                    "a1".into(),
                    Some("a1".into()),
                    100,
                    100,
                    1,
                    "signature does not verify".into()
                ),
                (
                    2,
                    "policy_rejected".into(),
                    "server".into(),
                    None,
                    200,
                    200,
                    1,
                    "policy.toml:6: unknown key".into()
                ),
            ]
        );
    }
}
