//! Query plans: which indexes a statement is served through.

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
