//! The shape of the `public` schema, read from the catalog as a set of facts, and
//! the check `migrate` runs before adopting a database: it must be empty, or the
//! old server's schema (plus what our applied migrations changed), nothing else.
//!
//! A fact is a key naming one object (`column daily_pots.total_credits`) and a value
//! describing it (`#3 integer NOT NULL DEFAULT 0`), so two shapes compare key by key
//! and every difference reads as one line.

use std::collections::BTreeMap;

use tokio_postgres::Client;

pub use super::facts::{Difference, Shape};
use super::legacy_shape::{self, LEGACY, LEGACY_TABLES};

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShapeCheck {
    /// `empty` (none of the old server's tables: V1 creates them), or `adoptable`
    /// (the old server's schema, with our migrations up to `applied_version`).
    pub state: &'static str,
    /// Our newest applied migration (0: none).
    pub applied_version: u32,
    /// Empty when the database may be migrated.
    pub differences: Vec<Difference>,
}

impl ShapeCheck {
    pub fn is_adoptable(&self) -> bool {
        self.differences.is_empty()
    }

    /// The check as a report of the audit (`migrate audit`).
    pub fn as_report(&self) -> crate::audit::Report {
        crate::audit::Report {
            title: "Schema shape (differences from the old server's schema plus our applied migrations)",
            columns: vec!["object", "difference"],
            rows: self
                .differences
                .iter()
                .map(|d| vec![d.key().to_string(), d.to_string()])
                .collect(),
        }
    }
}

/// Reads the shape and checks it against the old server's schema as our applied
/// migrations (per `refinery_schema_history`) changed it. Read only.
pub async fn check(client: &Client) -> Result<ShapeCheck, tokio_postgres::Error> {
    let shape = dump(client).await?;
    let applied_version = applied_version(client).await?;
    Ok(check_shape(&shape, applied_version))
}

/// [`check`] on a shape already read.
pub fn check_shape(shape: &Shape, applied_version: u32) -> ShapeCheck {
    let has_old_table = LEGACY_TABLES
        .iter()
        .any(|t| shape.0.contains_key(&format!("table {t}")));
    // Our history without the old tables is no empty database: say what is missing.
    if !has_old_table && applied_version == 0 {
        return ShapeCheck {
            state: "empty",
            applied_version,
            differences: Vec::new(),
        };
    }
    // Only the old server's tables (and the functions its triggers call) are judged:
    // other tables of the database are neither the old server's nor ours to check.
    let judged = legacy_shape::is_old_servers;
    let expected = Shape(
        LEGACY
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let live = Shape(
        shape
            .0
            .iter()
            .filter(|(k, _)| judged(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    );
    let missing_tables: Vec<String> = LEGACY_TABLES
        .iter()
        .filter(|t| !live.0.contains_key(&format!("table {t}")))
        .map(|t| t.to_string())
        .collect();
    let differences = live
        .diff(&expected)
        .into_iter()
        // A missing table is one difference, not one per column and index.
        .filter(|d| match legacy_shape::table_of(d.key()) {
            Some(t) => !missing_tables.iter().any(|m| m == t) || d.key() == format!("table {t}"),
            None => true,
        })
        // What our applied migrations added or dropped is expected, and so is what
        // the seed's own first step did (before V2, which does the same).
        .filter(|d| !legacy_shape::ours(d, applied_version) && !legacy_shape::made_by_the_seed(d))
        .collect();
    ShapeCheck {
        state: "adoptable",
        applied_version,
        differences,
    }
}

/// Our newest applied migration, 0 when none is (or refinery's table is absent).
pub async fn applied_version(client: &Client) -> Result<u32, tokio_postgres::Error> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('public.refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let version: Option<i32> = client
        .query_one("SELECT max(version) FROM refinery_schema_history", &[])
        .await?
        .get(0);
    Ok(version.unwrap_or(0).max(0) as u32)
}

/// Objects of `public` that belong to no extension.
macro_rules! not_an_extension {
    () => {
        "NOT EXISTS (SELECT 1 FROM pg_depend d
                 WHERE d.objid = o.oid AND d.deptype = 'e')"
    };
}

/// What the catalog is asked, per kind of fact: each query answers the object's name
/// (`table.column` for what belongs to a table), the fact, and its comment (NULL when
/// there is none, or the kind has no comments). A fact is `<kind> <name> = <fact>`,
/// a comment `comment on <kind> <name> = <comment>`.
const CATALOG: &[(&str, &str)] = &[
    (
        "table",
        concat!(
            "SELECT o.relname::text,
                    CASE o.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table'
                                   WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                                   WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table'
                                   ELSE o.relkind::text END
                    || CASE WHEN o.relforcerowsecurity THEN ', row-level security forced'
                            WHEN o.relrowsecurity THEN ', row-level security enabled'
                            ELSE '' END,
                    obj_description(o.oid, 'pg_class')
             FROM pg_class o JOIN pg_namespace n ON n.oid = o.relnamespace
             WHERE n.nspname = 'public' AND o.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
               AND ",
            not_an_extension!()
        ),
    ),
    (
        "column",
        concat!(
            "SELECT o.relname::text || '.' || a.attname::text,
                    '#' || row_number() OVER (PARTITION BY o.oid ORDER BY a.attnum) || ' '
                    || format_type(a.atttypid, a.atttypmod)
                    || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
                    || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
                    || CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY'
                                          WHEN 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY'
                                          ELSE '' END
                    || CASE WHEN a.attgenerated = 's' THEN ' GENERATED' ELSE '' END,
                    col_description(o.oid, a.attnum)
             FROM pg_attribute a
             JOIN pg_class o ON o.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = o.relnamespace
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE n.nspname = 'public' AND o.relkind IN ('r', 'p', 'v', 'm', 'f')
               AND a.attnum > 0 AND NOT a.attisdropped AND ",
            not_an_extension!()
        ),
    ),
    (
        "index",
        concat!(
            "SELECT t.relname::text || '.' || o.relname::text,
                    pg_get_indexdef(o.oid)
                    || CASE WHEN x.indisvalid THEN '' ELSE ' (INVALID)' END,
                    obj_description(o.oid, 'pg_class')
             FROM pg_index x
             JOIN pg_class o ON o.oid = x.indexrelid
             JOIN pg_class t ON t.oid = x.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             WHERE n.nspname = 'public' AND ",
            not_an_extension!()
        ),
    ),
    // NOT NULL is a column fact already (PostgreSQL 18 also lists it here).
    (
        "constraint",
        "SELECT t.relname::text || '.' || o.conname::text, pg_get_constraintdef(o.oid),
                NULL::text
         FROM pg_constraint o
         JOIN pg_class t ON t.oid = o.conrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE n.nspname = 'public' AND o.contype <> 'n'",
    ),
    (
        "trigger",
        "SELECT t.relname::text || '.' || o.tgname::text,
                pg_get_triggerdef(o.oid)
                || CASE o.tgenabled WHEN 'D' THEN ' (DISABLED)' ELSE '' END,
                NULL::text
         FROM pg_trigger o
         JOIN pg_class t ON t.oid = o.tgrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE n.nspname = 'public' AND NOT o.tgisinternal",
    ),
    // The body with its white space collapsed: how it was indented is no difference.
    // A procedure has no result type (pg_get_function_result is NULL).
    (
        "function",
        concat!(
            "SELECT o.proname || '(' || pg_get_function_identity_arguments(o.oid) || ')',
                    l.lanname || coalesce(' returns ' || pg_get_function_result(o.oid), ' procedure') || ': '
                    || btrim(regexp_replace(o.prosrc, '\\s+', ' ', 'g')),
                    obj_description(o.oid, 'pg_proc')
             FROM pg_proc o
             JOIN pg_namespace n ON n.oid = o.pronamespace
             JOIN pg_language l ON l.oid = o.prolang
             WHERE n.nspname = 'public' AND ",
            not_an_extension!()
        ),
    ),
];

/// Reads every fact of the `public` schema from the catalog.
pub async fn dump(client: &Client) -> Result<Shape, tokio_postgres::Error> {
    let mut facts = BTreeMap::new();
    for (kind, query) in CATALOG {
        for r in client.query(*query, &[]).await? {
            let name: String = r.get(0);
            if let Some(comment) = r.get::<_, Option<String>>(2) {
                facts.insert(format!("comment on {kind} {name}"), comment);
            }
            facts.insert(format!("{kind} {name}"), r.get(1));
        }
    }
    Ok(Shape(facts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_old_table_is_an_empty_database_unless_our_history_says_we_ran() {
        let empty = Shape::default();
        assert!(check_shape(&empty, 0).is_adoptable());
        let lost = check_shape(&empty, 3);
        assert!(!lost.is_adoptable());
        assert!(lost
            .differences
            .iter()
            .any(|d| d.to_string() == "table daily_pots: expected table, found nothing"));
    }
}
