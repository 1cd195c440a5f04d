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
