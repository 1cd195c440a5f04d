//! `docs/openapi.yaml` describes what is served: its paths are the routes of the
//! local router (Cargo.toml) and of `template.yaml` (template.rs holds those two
//! equal), each with the methods its function answers. The methods are the ones
//! each function's 405 names in `Allow` (asserted by its own tests in shared/tests);
//! scripts/fuzz-api checks them against the running functions.

use std::collections::{BTreeMap, BTreeSet};

use deploy_checks::{local_routes, root};
use serde_yaml_ng::Value;

fn yaml(file: &str) -> Value {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{file} is YAML: {e}"))
}

/// Path → methods of the document.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let doc = yaml("docs/openapi.yaml");
    assert_eq!(doc["openapi"].as_str(), Some("3.1.0"));
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    doc["paths"]
        .as_mapping()
        .expect("openapi.yaml has paths")
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_mapping()
                .unwrap()
                .keys()
                .filter_map(Value::as_str)
                .filter(|k| METHODS.contains(k))
                .map(str::to_uppercase)
                .collect();
            (path.as_str().unwrap().to_string(), methods)
        })
        .collect()
}

/// The paths of the local router.
fn router_paths() -> BTreeSet<String> {
    local_routes().into_iter().map(|(path, _)| path).collect()
}

/// The paths of every HttpApi event in template.yaml.
fn template_paths() -> BTreeSet<String> {
    let t = yaml("template.yaml");
    t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .flat_map(|r| r["Properties"]["Events"].as_mapping().cloned())
        .flat_map(|events| events.into_iter().map(|(_, e)| e))
        .filter(|e| e["Type"].as_str() == Some("HttpApi"))
        .map(|e| e["Properties"]["Path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_document_covers_every_route_served_and_no_other() {
    let documented: BTreeSet<String> = documented().into_keys().collect();
    assert_eq!(documented, router_paths(), "openapi.yaml vs the router");
    assert_eq!(
        documented,
        template_paths(),
        "openapi.yaml vs template.yaml"
    );
}

#[test]
fn each_route_lists_the_methods_its_function_answers() {
    let set = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let expected = BTreeMap::from([
        ("/daily-pot".to_string(), set(&["GET"])),
        ("/daily-pot/upload".to_string(), set(&["POST"])),
        ("/daily-pot/claim".to_string(), set(&["POST"])),
        ("/upload".to_string(), set(&["POST"])),
        ("/register-device".to_string(), set(&["POST"])),
        ("/api/user/tiles".to_string(), set(&["GET"])),
        ("/health".to_string(), set(&["GET", "HEAD"])),
        ("/analytics/aggregates".to_string(), set(&["GET", "HEAD"])),
        ("/analytics/coverage".to_string(), set(&["GET", "HEAD"])),
        ("/analytics/device-stats".to_string(), set(&["GET", "HEAD"])),
    ]);
    assert_eq!(documented(), expected);
}

#[test]
fn every_operation_documents_its_405_with_allow_and_its_503_with_retry_after() {
    let doc = yaml("docs/openapi.yaml");
    let resolve = |v: &Value| -> Value {
        match v["$ref"].as_str() {
            Some(r) => {
                let name = r.rsplit('/').next().unwrap();
                doc["components"]["responses"][name].clone()
            }
            None => v.clone(),
        }
    };
    for (path, methods) in documented() {
        for method in methods {
            let op = &doc["paths"][path.as_str()][method.to_lowercase().as_str()];
            let responses = &op["responses"];
            let unavailable = resolve(&responses["503"]);
            assert!(
                !unavailable["headers"]["Retry-After"].is_null(),
                "{method} {path}: 503 with Retry-After"
            );
            // A HEAD is only ever asked of a route that serves it.
            if method != "HEAD" {
                let refused = resolve(&responses["405"]);
                assert!(
                    !refused["headers"]["Allow"].is_null(),
                    "{method} {path}: 405 with Allow"
                );
            }
        }
    }
}
