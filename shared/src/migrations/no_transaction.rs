//! Migration and undo files whose statements must run outside a transaction:
//! `CREATE INDEX CONCURRENTLY` and `DROP INDEX CONCURRENTLY`, which a transaction
//! refuses, and which on a large live table are the only builds and drops that do
//! not block the old server's uploads for their whole length.
//!
//! Such a file starts with [`NO_TRANSACTION`](super::files::NO_TRANSACTION); its statements are sent one by one,
//! so each must be safe to run twice (`IF [NOT] EXISTS`): a run that stopped
//! half-way is resumed by running the file again. Before a concurrent build, an
//! INVALID index of that name (left by a failed or interrupted build, which
//! `IF NOT EXISTS` would take for done) is dropped.
//!
//! In an undo file, a line `-- dailypot: if found <fact>` (or `unless found <fact>`)
//! makes the statement after it run only when the first `migrate` found (or did not
//! find) that fact ([`super::found`]): the undo gives back what was there.

use tokio_postgres::Client;

use super::error::MigrateError;
use super::found::Found;

/// One statement of a file, and the condition it runs under, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Statement {
    pub sql: String,
    pub guard: Option<Guard>,
}

/// `-- dailypot: if found <fact>` (`found: true`) or `unless found <fact>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Guard {
    pub found: bool,
    pub fact: String,
}

impl Guard {
    fn parse(comment: &str) -> Option<Self> {
        let condition = comment.trim().strip_prefix("dailypot:")?.trim_start();
        let (found, fact) = if let Some(fact) = condition.strip_prefix("if found ") {
            (true, fact)
        } else {
            (false, condition.strip_prefix("unless found ")?)
        };
        Some(Self {
            found,
            fact: fact.trim().to_string(),
        })
    }
}

/// What a run of a file did besides its statements.
#[derive(Debug, Default)]
pub(super) struct Ran {
    /// INVALID indexes dropped before building them again.
    pub rebuilt: Vec<String>,
    /// Statements left out by their guard, described.
    pub skipped: Vec<String>,
}

/// Runs the statements of `sql` one by one; `step` names the file in errors. Guards
/// are read against `found`: an undo's (forward migrations have none).
pub(super) async fn run(
    client: &Client,
    sql: &str,
    step: &str,
    found: Option<&Found>,
) -> Result<Ran, MigrateError> {
    let mut ran = Ran::default();
    let statements = statements(sql);
    let total = statements.len();
    for (n, statement) in statements.into_iter().enumerate() {
        if let Some(guard) = &statement.guard {
            let found = found.expect("guards are read in undo files only (a unit test checks)");
            if found.has(&guard.fact) != guard.found {
                let was = if guard.found {
                    "not there"
                } else {
                    "already there"
                };
                tracing::info!(step, fact = %guard.fact, "migrate: {was} before us, left so");
                ran.skipped
                    .push(format!("{step}: {} {was} before migrate", guard.fact));
                continue;
            }
        }
        tracing::info!(
            step,
            statement = n + 1,
            of = total,
            "migrate: running a statement"
        );
        if let Some(index) = concurrent_index_name(&statement.sql) {
            if drop_if_invalid(client, index, step).await? {
                ran.rebuilt.push(index.to_string());
            }
        }
        client
            .batch_execute(&statement.sql)
            .await
            .map_err(|e| MigrateError::sql(step, e))?;
    }
    Ok(ran)
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
/// `--` comments are dropped (a `;` in one splits nothing), and a guard line applies
/// to the statement after it; the rest is split at `;` (such files hold no function
/// bodies, quoted semicolons or comments after code on a line).
pub(super) fn statements(sql: &str) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut code = String::new();
    let mut guard = None;
    let mut finish = |code: &mut String, guard: &mut Option<Guard>| {
        let sql = code.trim();
        if !sql.is_empty() {
            out.push(Statement {
                sql: sql.to_string(),
                guard: guard.take(),
            });
        }
        code.clear();
    };
    for line in sql.lines() {
        if let Some(comment) = line.trim_start().strip_prefix("--") {
            if let Some(g) = Guard::parse(comment) {
                guard = Some(g);
            }
            continue;
        }
        let mut parts = line.split(';');
        code.push_str(parts.next().unwrap_or_default());
        for part in parts {
            finish(&mut code, &mut guard);
            code.push_str(part);
        }
        code.push('\n');
    }
    finish(&mut code, &mut guard);
    out
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

    fn sql_of(statements: Vec<Statement>) -> Vec<String> {
        statements.into_iter().map(|s| s.sql).collect()
    }

    #[test]
    fn a_no_transaction_file_splits_into_its_statements_without_comments() {
        let sql = "-- dailypot: no transaction\n-- why\nCREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x);\n\n-- more\nCOMMENT ON INDEX b IS NULL;\n";
        assert_eq!(
            sql_of(statements(sql)),
            [
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x)",
                "COMMENT ON INDEX b IS NULL"
            ]
        );
        // A semicolon in a comment splits nothing; two statements on a line are two.
        assert_eq!(
            sql_of(statements(
                "-- a; b\nDROP INDEX CONCURRENTLY IF EXISTS x;\nSELECT 1; SELECT\n 2;"
            )),
            [
                "DROP INDEX CONCURRENTLY IF EXISTS x",
                "SELECT 1",
                "SELECT\n 2"
            ]
        );
    }

    #[test]
    fn a_guard_line_applies_to_the_statement_after_it() {
        let sql = "-- dailypot: no transaction\n\
                   -- dailypot: if found index t.a\n\
                   CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x);\n\
                   SELECT 1;\n\
                   -- why it is so\n\
                   -- dailypot: unless found comment on index t.b\n\
                   COMMENT ON INDEX b\n  IS NULL;\n";
        let guard = |found: bool, fact: &str| {
            Some(Guard {
                found,
                fact: fact.into(),
            })
        };
        assert_eq!(
            statements(sql)
                .into_iter()
                .map(|s| s.guard)
                .collect::<Vec<_>>(),
            [
                guard(true, "index t.a"),
                None,
                guard(false, "comment on index t.b")
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

    /// Every file, migration or undo, as (label, sql).
    fn all_files() -> Vec<(String, String)> {
        let undo = super::super::files::UNDO
            .iter()
            .map(|u| (format!("undo of V{}", u.version), u.sql.to_string()));
        let runner = super::super::files::migrations::runner();
        let forward = runner.get_migrations().iter().map(|m| {
            (
                format!("V{}", m.version()),
                m.sql().unwrap_or_default().to_string(),
            )
        });
        undo.chain(forward).collect()
    }

    /// Every file with the marker.
    fn marked_files() -> Vec<(String, String)> {
        all_files()
            .into_iter()
            .filter(|(_, sql)| sql.starts_with(super::super::files::NO_TRANSACTION))
            .collect()
    }

    #[test]
    fn guards_are_in_undo_files_with_the_marker_only_and_name_facts_of_the_old_server() {
        let mut guards = 0;
        for (label, sql) in all_files() {
            for line in sql.lines() {
                let Some(guard) = line.strip_prefix("--").and_then(Guard::parse) else {
                    continue;
                };
                guards += 1;
                // Elsewhere the line would be a comment, silently ignored.
                assert!(
                    label.starts_with("undo")
                        && sql.starts_with(super::super::files::NO_TRANSACTION),
                    "{label}: {line}"
                );
                assert!(
                    crate::migrations::legacy_shape::is_old_servers(&guard.fact)
                        || guard.fact.starts_with(&super::super::found::runner_row("")),
                    "{label}: {line} names no fact of the old server's"
                );
            }
        }
        assert!(guards > 0, "the undo of V2 has some");
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
                let upper = statement.sql.to_ascii_uppercase();
                let statement = statement.sql.as_str();
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
