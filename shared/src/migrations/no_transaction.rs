//! Migration and undo files whose statements must run outside a transaction:
//! `CREATE INDEX CONCURRENTLY` and `DROP INDEX CONCURRENTLY`, which a transaction
//! refuses, and which on a large live table are the only builds and drops that do
//! not block the old server's uploads for their whole length.
//!
//! Such a file starts with [`NO_TRANSACTION`]; its statements are sent one by one,
//! so each must be safe to run twice (`IF [NOT] EXISTS`): a run that stopped
//! half-way is resumed by running the file again. Before a concurrent build, an
//! INVALID index of that name (left by a failed or interrupted build, which
//! `IF NOT EXISTS` would take for done) is dropped.

use tokio_postgres::Client;

use super::MigrateError;

/// The first line of a file whose statements run outside a transaction.
pub const NO_TRANSACTION: &str = "-- dailypot: no transaction";

/// Runs the statements of `sql` one by one; `step` names the file in errors. Returns
/// the INVALID indexes it dropped before building them again.
pub(super) async fn run(
    client: &Client,
    sql: &str,
    step: &str,
) -> Result<Vec<String>, MigrateError> {
    let mut rebuilt = Vec::new();
    let statements = statements(sql);
    let total = statements.len();
    for (n, statement) in statements.into_iter().enumerate() {
        tracing::info!(
            step,
            statement = n + 1,
            of = total,
            "migrate: running a statement"
        );
        if let Some(index) = concurrent_index_name(&statement) {
            if drop_if_invalid(client, index, step).await? {
                rebuilt.push(index.to_string());
            }
        }
        client
            .batch_execute(&statement)
            .await
            .map_err(|e| MigrateError::sql(step, e))?;
    }
    Ok(rebuilt)
}

/// Drops `index` if it exists and is INVALID; true if it did.
async fn drop_if_invalid(client: &Client, index: &str, step: &str) -> Result<bool, MigrateError> {
    let invalid = client
        .query_opt(
            "SELECT NOT x.indisvalid FROM pg_index x WHERE x.indexrelid = to_regclass($1)",
            &[&index],
        )
        .await
        .map_err(|e| MigrateError::sql(step, e))?
        .is_some_and(|r| r.get::<_, bool>(0));
    if invalid {
        tracing::warn!(
            index,
            "an earlier build left this index INVALID; rebuilding it"
        );
        // The name comes from our own migration files, never from input.
        client
            .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {index}"))
            .await
            .map_err(|e| MigrateError::sql(step, e))?;
    }
    Ok(invalid)
}

/// The statements of a no-transaction file, without their comments: whole-line
/// `--` comments are dropped first (a `;` in one must not split a statement), then
/// the rest is split at `;` (such files hold no function bodies, quoted semicolons
/// or comments after code on a line).
pub(super) fn statements(sql: &str) -> Vec<String> {
    let code: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .map(|l| format!("{l}\n"))
        .collect();
    code.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The index a `CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS] <name>` builds.
pub(super) fn concurrent_index_name(statement: &str) -> Option<&str> {
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
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x)",
                "COMMENT ON INDEX b IS NULL"
            ]
        );
        // A semicolon in a comment splits nothing.
        assert_eq!(
            statements("-- a; b\nDROP INDEX CONCURRENTLY IF EXISTS x;\n"),
            ["DROP INDEX CONCURRENTLY IF EXISTS x"]
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

    /// Every file (migration or undo) with the marker, as (label, sql).
    fn marked_files() -> Vec<(String, String)> {
        let undo = super::super::UNDO
            .iter()
            .map(|u| (format!("undo of V{}", u.version), u.sql.to_string()));
        let runner = super::super::migrations::runner();
        let forward = runner.get_migrations().iter().map(|m| {
            (
                format!("V{}", m.version()),
                m.sql().unwrap_or_default().to_string(),
            )
        });
        undo.chain(forward)
            .filter(|(_, sql)| sql.starts_with(NO_TRANSACTION))
            .collect()
    }

    #[test]
    fn every_file_with_the_marker_has_only_statements_safe_outside_a_transaction() {
        let files = marked_files();
        assert!(
            files.iter().any(|(l, _)| !l.starts_with("undo")),
            "V7 is one"
        );
        for (label, sql) in files {
            for statement in statements(&sql) {
                let upper = statement.to_ascii_uppercase();
                let statement = statement.as_str();
                assert!(
                    !upper.contains("SET LOCAL") && !upper.contains("$$"),
                    "{label}: {statement}"
                );
                if upper.contains("CREATE INDEX") {
                    assert!(
                        concurrent_index_name(statement).is_some()
                            && upper.contains("IF NOT EXISTS"),
                        "{label}: an index build there must be CONCURRENTLY IF NOT EXISTS: {statement}"
                    );
                }
                if upper.contains("DROP INDEX") {
                    assert!(
                        upper.contains("CONCURRENTLY") && upper.contains("IF EXISTS"),
                        "{label}: an index drop there must be CONCURRENTLY IF EXISTS: {statement}"
                    );
                }
            }
        }
    }
}
