//! The index and table audit (the seed's reports): which indexes are used, which are
//! never used, and how much of each table is dead rows.

use crate::db::{Database, DbError, Query, Replay};

const INDEX_USAGE: Query = Query::new(
    "audit_index_usage",
    "SELECT s.relname::text, s.indexrelname::text, s.idx_scan, s.idx_tup_read, s.idx_tup_fetch,
            pg_size_pretty(pg_relation_size(s.indexrelid))
     FROM pg_stat_user_indexes s
     ORDER BY s.relname, s.idx_scan DESC, s.indexrelname",
);

// Unique indexes (primary keys included) enforce rules, so an unused one stays.
const UNUSED_INDEXES: Query = Query::new(
    "audit_unused_indexes",
    "SELECT s.relname::text, s.indexrelname::text, pg_size_pretty(pg_relation_size(s.indexrelid)),
            pg_get_indexdef(s.indexrelid)
     FROM pg_stat_user_indexes s
     JOIN pg_index i ON i.indexrelid = s.indexrelid
     WHERE s.idx_scan = 0 AND NOT i.indisunique
     ORDER BY pg_relation_size(s.indexrelid) DESC, s.indexrelname",
);

const TABLE_BLOAT: Query = Query::new(
    "audit_table_bloat",
    "SELECT relname::text, n_live_tup, n_dead_tup,
            round(100.0 * n_dead_tup / greatest(n_live_tup + n_dead_tup, 1), 1)::text,
            pg_size_pretty(pg_total_relation_size(relid)),
            coalesce(greatest(last_vacuum, last_autovacuum)::text, 'never')
     FROM pg_stat_user_tables
     ORDER BY n_dead_tup DESC, relname",
);

/// One report: a title, column names, rows of text.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub title: &'static str,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

/// Runs the three reports (read-only).
pub async fn run(db: &Database) -> Result<Vec<Report>, DbError> {
    let usage = db.query(&INDEX_USAGE, &[], Replay::Safe).await?;
    let unused = db.query(&UNUSED_INDEXES, &[], Replay::Safe).await?;
    let bloat = db.query(&TABLE_BLOAT, &[], Replay::Safe).await?;
    Ok(vec![
        Report {
            title: "Index usage",
            columns: vec![
                "table",
                "index",
                "scans",
                "tuples read",
                "tuples fetched",
                "size",
            ],
            rows: usage
                .iter()
                .map(|r| {
                    vec![
                        r.get::<_, String>(0),
                        r.get::<_, String>(1),
                        r.get::<_, i64>(2).to_string(),
                        r.get::<_, i64>(3).to_string(),
                        r.get::<_, i64>(4).to_string(),
                        r.get::<_, String>(5),
                    ]
                })
                .collect(),
        },
        Report {
            title: "Unused indexes (never scanned, not unique: each costs every write)",
            columns: vec!["table", "index", "size", "definition"],
            rows: unused
                .iter()
                .map(|r| (0..4).map(|i| r.get::<_, String>(i)).collect())
                .collect(),
        },
        Report {
            title: "Table bloat (dead rows)",
            columns: vec![
                "table",
                "live rows",
                "dead rows",
                "dead %",
                "total size",
                "last vacuum",
            ],
            rows: bloat
                .iter()
                .map(|r| {
                    vec![
                        r.get::<_, String>(0),
                        r.get::<_, i64>(1).to_string(),
                        r.get::<_, i64>(2).to_string(),
                        r.get::<_, String>(3),
                        r.get::<_, String>(4),
                        r.get::<_, String>(5),
                    ]
                })
                .collect(),
        },
    ])
}

/// Lays a report out as an aligned text table.
pub fn render(report: &Report) -> String {
    let mut widths: Vec<usize> = report.columns.iter().map(|c| c.chars().count()).collect();
    for row in &report.rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join(" | ")
            .trim_end()
            .to_string()
    };
    let mut out = format!("== {} ==\n", report.title);
    out += &line(report.columns.clone());
    out.push('\n');
    out += &widths
        .iter()
        .map(|w| "-".repeat(*w))
        .collect::<Vec<_>>()
        .join("-+-");
    out.push('\n');
    if report.rows.is_empty() {
        out += "(none)\n";
    }
    for row in &report.rows {
        out += &line(row.iter().map(String::as_str).collect());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_report_renders_aligned_with_a_header_and_an_empty_marker() {
        let r = super::Report {
            title: "T",
            columns: vec!["a", "bb"],
            rows: vec![vec!["xxx".into(), "y".into()]],
        };
        assert_eq!(super::render(&r), "== T ==\na   | bb\n----+---\nxxx | y\n");
        let empty = super::Report { rows: vec![], ..r };
        assert!(super::render(&empty).ends_with("(none)\n"));
    }
}
