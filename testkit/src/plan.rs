//! Query plans: which indexes a statement is served through, which relations it read.

use serde_json::Value;

/// Every `Index Name` of a plan from `EXPLAIN (FORMAT JSON)`, outermost first.
pub fn index_names(plan: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect(plan, &mut out);
    out
}

fn collect(plan: &Value, out: &mut Vec<String>) {
    match plan {
        Value::Object(map) => {
            if let Some(Value::String(name)) = map.get("Index Name") {
                out.push(name.clone());
            }
            map.values().for_each(|v| collect(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
        _ => {}
    }
}

/// `(node type, index)` of every node of a plan from `EXPLAIN (ANALYZE, FORMAT
/// JSON)` that ran and reads through an index, outermost first: the branches a
/// one-time filter skipped (`never executed`) left out.
pub fn executed_indexes(plan: &Value) -> Vec<(String, String)> {
    fn walk(node: &Value, out: &mut Vec<(String, String)>) {
        if node["Actual Loops"].as_u64().unwrap_or(0) == 0 {
            return;
        }
        if let (Some(kind), Some(index)) = (node["Node Type"].as_str(), node["Index Name"].as_str())
        {
            out.push((kind.to_string(), index.to_string()));
        }
        for child in node["Plans"].as_array().into_iter().flatten() {
            walk(child, out);
        }
    }
    let mut out = Vec::new();
    for root in plan.as_array().into_iter().flatten() {
        walk(&root["Plan"], &mut out);
    }
    out
}

/// Every relation a plan from `EXPLAIN (ANALYZE, FORMAT JSON)` actually read: the
/// `Relation Name` of each node that ran at least once (a node under a filter that
/// never let it start shows `Actual Loops: 0`), sorted, each once.
pub fn relations_read(plan: &Value) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    collect_read(plan, &mut out);
    out.into_iter().collect()
}

fn collect_read(plan: &Value, out: &mut std::collections::BTreeSet<String>) {
    match plan {
        Value::Object(map) => {
            let ran = map
                .get("Actual Loops")
                .and_then(Value::as_u64)
                .is_some_and(|loops| loops > 0);
            if let (true, Some(Value::String(name))) = (ran, map.get("Relation Name")) {
                out.insert(name.clone());
            }
            map.values().for_each(|v| collect_read(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_read(v, out)),
        _ => {}
    }
}
