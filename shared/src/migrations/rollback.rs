//! Rollback: the undo of every applied migration, newest first, back to exactly the
//! old server's schema with every row kept; then refinery's history table goes, so
//! `migrate` afterwards applies everything again.
//!
//! Each undo's history row is deleted as soon as the undo is done, so a rollback
//! that stopped half-way (a lock timeout, a lost connection, Lambda's time limit)
//! resumes where it stopped when run again.
//!
//! An undo file runs in one transaction with the deletion of its history row, unless
//! its first line is [`NO_TRANSACTION`]: then each statement is sent on its own (for
//! `CREATE INDEX CONCURRENTLY`, which a transaction refuses), every statement must be
//! safe to run twice, and the history row is deleted after the last one. Before a
//! concurrent index build, an INVALID index of that name (left by a failed or
//! interrupted build, which `IF NOT EXISTS` would take for done) is dropped.

use tokio_postgres::Client;

use super::{MigrateError, Undo, UNDO};

/// The first line of an undo file whose statements run outside a transaction.
pub const NO_TRANSACTION: &str = "-- dailypot: no transaction";

/// What a rollback did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RollbackReport {
    /// Migrations undone by this run, newest first, as `V<n>__<name>`.
    pub undone: Vec<String>,
    /// INVALID indexes (left by an earlier failed build) dropped before rebuilding.
    pub invalid_indexes_rebuilt: Vec<String>,
    /// Role defaults reset (behind RDS Proxy: the statement timeout `migrate` set).
    pub role_defaults: Vec<String>,
}

/// Undoes every applied migration. The caller holds the migration lock.
pub(super) async fn run(client: &mut Client) -> Result<RollbackReport, MigrateError> {
    let mut report = RollbackReport::default();
    let history: bool = client
        .query_one(
            "SELECT to_regclass('public.refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .map_err(|e| MigrateError::sql("reading the migration history", e))?
        .get(0);
    if !history {
        return Ok(report);
    }
    let applied = client
        .query(
            "SELECT version, name FROM refinery_schema_history ORDER BY version DESC",
            &[],
        )
        .await
        .map_err(|e| MigrateError::sql("reading the migration history", e))?;
    // Every applied migration must be one we can undo, or nothing is touched.
    let mut plan: Vec<&Undo> = Vec::new();
    for row in &applied {
        let (version, name): (i32, String) = (row.get(0), row.get(1));
        match UNDO
            .iter()
            .find(|u| i64::from(u.version) == i64::from(version) && u.name == name)
        {
            Some(undo) => plan.push(undo),
            None => return Err(MigrateError::UnknownMigration { version, name }),
        }
    }
    for undo in plan {
        let label = format!("V{}__{}", undo.version, undo.name);
        if undo.sql.starts_with(NO_TRANSACTION) {
            for statement in statements(undo.sql) {
                if let Some(index) = concurrent_index_name(statement) {
                    if drop_if_invalid(client, index, &label).await? {
                        report.invalid_indexes_rebuilt.push(index.to_string());
                    }
                }
                client
                    .batch_execute(statement)
                    .await
                    .map_err(|e| MigrateError::sql(format!("undo of {label}"), e))?;
            }
            client
                .execute(
                    "DELETE FROM refinery_schema_history WHERE version = $1",
                    &[&(undo.version as i32)],
                )
                .await
                .map_err(|e| MigrateError::sql(format!("undo of {label}"), e))?;
        } else {
            let tx = client
                .transaction()
                .await
                .map_err(|e| MigrateError::sql(format!("undo of {label}"), e))?;
            tx.batch_execute(undo.sql)
                .await
                .map_err(|e| MigrateError::sql(format!("undo of {label}"), e))?;
            tx.execute(
                "DELETE FROM refinery_schema_history WHERE version = $1",
                &[&(undo.version as i32)],
            )
            .await
            .map_err(|e| MigrateError::sql(format!("undo of {label}"), e))?;
            tx.commit()
                .await
                .map_err(|e| MigrateError::sql(format!("undo of {label}"), e))?;
        }
        tracing::info!(migration = %label, "undone");
        report.undone.push(label);
    }
    client
        .batch_execute("DROP TABLE IF EXISTS refinery_schema_history")
        .await
        .map_err(|e| MigrateError::sql("dropping the migration history", e))?;
    Ok(report)
}

/// Drops `index` if it exists and is INVALID; true if it did.
async fn drop_if_invalid(client: &Client, index: &str, label: &str) -> Result<bool, MigrateError> {
    let invalid = client
        .query_opt(
            "SELECT NOT x.indisvalid FROM pg_index x WHERE x.indexrelid = to_regclass($1)",
            &[&index],
        )
        .await
        .map_err(|e| MigrateError::sql(format!("undo of {label}"), e))?
        .is_some_and(|r| r.get::<_, bool>(0));
    if invalid {
        tracing::warn!(
            index,
            "an earlier build left this index INVALID; rebuilding it"
        );
        // The name comes from our own undo file, never from input.
        client
            .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {index}"))
            .await
            .map_err(|e| MigrateError::sql(format!("undo of {label}"), e))?;
    }
    Ok(invalid)
}

/// The statements of a no-transaction undo file: comment lines dropped, split at `;`
/// (such files hold no function bodies or quoted semicolons).
fn statements(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in sql.char_indices() {
        if c == ';' {
            out.push(&sql[start..i]);
            start = i + 1;
        }
    }
    out.push(&sql[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| {
            s.lines()
                .any(|l| !l.trim().is_empty() && !l.trim().starts_with("--"))
        })
        .collect()
}

/// The index a `CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS] <name>` builds.
fn concurrent_index_name(statement: &str) -> Option<&str> {
    let code = statement
        .lines()
        .filter(|l| !l.trim().starts_with("--"))
        .collect::<Vec<_>>();
    let first = code.first()?;
    // The name must be on the statement's first code line (as in our files).
    let words: Vec<&str> = first.split_whitespace().collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let mut i = 0;
    let mut expect = |word: &str, optional: bool| {
        if upper.get(i).map(String::as_str) == Some(word) {
            i += 1;
            true
        } else {
            optional
        }
    };
    if !(expect("CREATE", false)
        && expect("UNIQUE", true)
        && expect("INDEX", false)
        && expect("CONCURRENTLY", false))
    {
        return None;
    }
    if upper.get(i).map(String::as_str) == Some("IF") {
        i += 3; // IF NOT EXISTS
    }
    let name = words.get(i)?;
    (!name.eq_ignore_ascii_case("ON")).then_some(*name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_no_transaction_file_splits_into_its_statements_without_comments() {
        let sql = "-- dailypot: no transaction\n-- why\nCREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x);\n\n-- more\nCOMMENT ON INDEX b IS NULL;\n";
        assert_eq!(
            statements(sql),
            [
                "-- dailypot: no transaction\n-- why\nCREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x)",
                "-- more\nCOMMENT ON INDEX b IS NULL"
            ]
        );
    }

    #[test]
    fn the_index_of_a_concurrent_build_is_found() {
        assert_eq!(
            concurrent_index_name("-- c\nCREATE INDEX CONCURRENTLY IF NOT EXISTS idx_a ON t (x)"),
            Some("idx_a")
        );
        assert_eq!(
            concurrent_index_name("create unique index concurrently idx_b on t (x)"),
            Some("idx_b")
        );
        assert_eq!(concurrent_index_name("CREATE INDEX idx_c ON t (x)"), None);
        assert_eq!(
            concurrent_index_name("CREATE INDEX CONCURRENTLY ON t (x)"),
            None
        );
        assert_eq!(concurrent_index_name("COMMENT ON INDEX x IS NULL"), None);
    }

    #[test]
    fn every_undo_file_with_the_marker_has_only_statements_safe_outside_a_transaction() {
        for undo in UNDO.iter().filter(|u| u.sql.starts_with(NO_TRANSACTION)) {
            for statement in statements(undo.sql) {
                let upper = statement.to_ascii_uppercase();
                assert!(
                    !upper.contains("SET LOCAL") && !upper.contains("$$"),
                    "V{}: {statement}",
                    undo.version
                );
                if upper.contains("CREATE INDEX") {
                    assert!(
                        concurrent_index_name(statement).is_some()
                            && upper.contains("IF NOT EXISTS"),
                        "V{}: an index build there must be CONCURRENTLY IF NOT EXISTS: {statement}",
                        undo.version
                    );
                }
            }
        }
    }
}
