//! What `template.yaml` promises, checked: it lints clean with the pinned cfn-lint
//! (and that lint does reject broken templates), every function is in it, and
//! every function's statement timeout is below its own Lambda timeout.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn template_text() -> String {
    std::fs::read_to_string(root().join("template.yaml")).expect("template.yaml is readable")
}

fn template() -> Value {
    serde_yaml_ng::from_str(&template_text()).expect("template.yaml is YAML")
}

/// The cfn-lint version CI installs (scripts/lib/tools.sh): newer ones passed
/// broken SAM templates on this project (see the README).
fn pinned_cfn_lint() -> String {
    let tools = std::fs::read_to_string(root().join("scripts/lib/tools.sh")).unwrap();
    tools
        .lines()
        .find_map(|l| l.strip_prefix("CFN_LINT_VERSION="))
        .expect("scripts/lib/tools.sh pins CFN_LINT_VERSION")
        .trim_matches('"')
        .to_string()
}

/// Runs the pinned cfn-lint on `path`: (exit code, output).
fn cfn_lint(path: &Path) -> (i32, String) {
    let version = Command::new("cfn-lint")
        .arg("--version")
        .output()
        .expect("cfn-lint is installed (scripts/test installs the pinned version)");
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    assert_eq!(
        version,
        format!("cfn-lint {}", pinned_cfn_lint()),
        "the cfn-lint on PATH is not the pinned one"
    );
    let out = Command::new("cfn-lint").arg(path).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// `(logical id, properties)` of every AWS::Serverless::Function.
fn functions(t: &Value) -> Vec<(String, Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(id, r)| (id.as_str().unwrap().to_string(), r.clone()))
        .collect()
}

/// A function's property, else the Globals' one.
fn property(t: &Value, function: &Value, name: &str) -> Value {
    match &function["Properties"][name] {
        Value::Null => t["Globals"]["Function"][name].clone(),
        v => v.clone(),
    }
}

fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[test]
fn the_template_passes_the_pinned_cfn_lint_without_errors_or_warnings() {
    let (code, output) = cfn_lint(&root().join("template.yaml"));
    assert_eq!(code, 0, "cfn-lint template.yaml:\n{output}");
    assert!(output.trim().is_empty(), "{output}");
}

#[test]
fn the_same_lint_rejects_deliberately_broken_copies_of_the_template() {
    let original = template_text();
    let breakages = [
        (
            "a reference to a resource that does not exist",
            "Destination: !GetAtt DailyResetDeadLetters.Arn",
            "Destination: !GetAtt NoSuchQueue.Arn",
        ),
        (
            "a runtime Lambda does not have",
            "Runtime: provided.al2023",
            "Runtime: provided.al2099",
        ),
        (
            "a property SQS does not know",
            "SqsManagedSseEnabled: true",
            "SqsManagedSseEnabeld: true",
        ),
        (
            "a parameter of a type CloudFormation does not have",
            "Default: 30\n    AllowedValues: [1, 3, 5, 7, 14, 30, 60, 90, 180, 365]",
            "Default: 30\n    AllowedValues: [1, 3, 5, 7, 14, 30, 60, 90, 180, 365]\n  Unused:\n    Type: Strng",
        ),
    ];
    let dir = std::env::temp_dir().join(format!("broken-templates-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, (what, from, to)) in breakages.iter().enumerate() {
        assert!(
            original.contains(from),
            "the template no longer has {from:?}"
        );
        let path = dir.join(format!("broken-{i}.yaml"));
        std::fs::write(&path, original.replacen(from, to, 1)).unwrap();
        let (code, output) = cfn_lint(&path);
        assert_ne!(code, 0, "cfn-lint accepted {what}:\n{output}");
        assert!(output.contains(&format!("broken-{i}.yaml")), "{output}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_function_cancels_its_statements_before_lambda_ends_the_invocation() {
    let t = template();
    let functions = functions(&t);
    assert!(!functions.is_empty());
    for (id, f) in &functions {
        let timeout_s = number(&property(&t, f, "Timeout"))
            .unwrap_or_else(|| panic!("{id} has no numeric Timeout"));
        // Each function states its own: a global default would hide a mismatch.
        let statement_ms =
            number(&f["Properties"]["Environment"]["Variables"]["DB_STATEMENT_TIMEOUT_MS"])
                .unwrap_or_else(|| panic!("{id} sets no DB_STATEMENT_TIMEOUT_MS of its own"));
        assert!(
            statement_ms > 0 && statement_ms < timeout_s * 1000,
            "{id}: DB_STATEMENT_TIMEOUT_MS {statement_ms} must be below its Timeout {timeout_s}s"
        );
        let has_http_route = f["Properties"]["Events"]
            .as_mapping()
            .is_some_and(|events| {
                events
                    .values()
                    .any(|e| e["Type"].as_str() == Some("HttpApi"))
            });
        if has_http_route {
            // API Gateway gives up after 30 s: a longer function would answer nobody.
            assert!(
                timeout_s < 30,
                "{id}: Timeout {timeout_s}s exceeds API Gateway's 30 s"
            );
        }
    }
}

/// Names of the `functions/*` crates (each directory's package is named after it).
fn function_directories() -> BTreeSet<String> {
    std::fs::read_dir(root().join("functions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").exists())
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            let manifest = std::fs::read_to_string(p.join("Cargo.toml")).unwrap();
            assert!(
                manifest.contains(&format!("name = \"{name}\"")),
                "functions/{name}: the package must be named after its directory"
            );
            name
        })
        .collect()
}

#[test]
fn every_function_directory_has_a_function_in_the_template_and_the_reverse() {
    let t = template();
    let in_template: BTreeSet<String> = functions(&t)
        .iter()
        .map(|(id, f)| {
            assert_eq!(
                f["Metadata"]["BuildMethod"].as_str(),
                Some("rust-cargolambda"),
                "{id}"
            );
            f["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap_or_else(|| panic!("{id} names no Binary"))
                .to_string()
        })
        .collect();
    assert_eq!(in_template, function_directories());
}

#[test]
fn every_function_runs_on_arm64_with_the_provided_runtime_and_vendored_openssl() {
    let t = template();
    for (id, f) in functions(&t) {
        assert_eq!(
            property(&t, &f, "Runtime").as_str(),
            Some("provided.al2023"),
            "{id}"
        );
        assert_eq!(
            property(&t, &f, "Handler").as_str(),
            Some("bootstrap"),
            "{id}"
        );
        let arch: Vec<Value> =
            serde_yaml_ng::from_value(property(&t, &f, "Architectures")).unwrap();
        assert_eq!(arch, vec![Value::from("arm64")], "{id}");
        let flags: Vec<String> =
            serde_yaml_ng::from_value(f["Metadata"]["BuildProperties"]["Flags"].clone())
                .unwrap_or_default();
        assert_eq!(flags, ["--features", "shared/vendored-openssl"], "{id}");
        assert!(
            f["Properties"]["LoggingConfig"]["LogGroup"] != Value::Null,
            "{id}: its log group (with retention) is the template's"
        );
    }
}

#[test]
fn the_emulator_token_switch_is_never_deployed() {
    assert!(!template_text().contains("FIREBASE_AUTH_EMULATOR_HOST"));
}

#[test]
fn the_reset_runs_at_midnight_utc_with_retries_and_a_dead_letter_queue() {
    let t = template();
    let reset = &t["Resources"]["DailyResetFunction"]["Properties"];
    let schedule = &reset["Events"]["Midnight"]["Properties"];
    assert_eq!(
        schedule["ScheduleExpression"].as_str(),
        Some("cron(0 0 * * ? *)")
    );
    assert_eq!(schedule["ScheduleExpressionTimezone"].as_str(), Some("UTC"));
    assert!(number(&schedule["RetryPolicy"]["MaximumRetryAttempts"]).unwrap() > 0);
    assert!(number(&reset["EventInvokeConfig"]["MaximumRetryAttempts"]).unwrap() > 0);
    assert_eq!(
        reset["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Type"].as_str(),
        Some("SQS")
    );
}

/// `(path, binary)` of every HttpApi route in the template.
fn template_routes(t: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (id, f) in functions(t) {
        let binary = f["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap()
            .to_string();
        for event in f["Properties"]["Events"]
            .as_mapping()
            .into_iter()
            .flat_map(|m| m.values())
        {
            if event["Type"].as_str() == Some("HttpApi") {
                let p = &event["Properties"];
                assert_eq!(
                    p["Method"].as_str(),
                    Some("ANY"),
                    "{id}: the function answers 405 itself"
                );
                routes.insert((p["Path"].as_str().unwrap().to_string(), binary.clone()));
            }
        }
    }
    routes
}

/// `(path, function)` of `[workspace.metadata.lambda.watch.router]` in Cargo.toml.
fn local_routes() -> BTreeSet<(String, String)> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let section = manifest
        .split("[workspace.metadata.lambda.watch.router]")
        .nth(1)
        .expect("Cargo.toml has the watch router");
    section
        .lines()
        .take_while(|l| !l.starts_with('['))
        .filter(|l| l.starts_with('"'))
        .map(|l| {
            let (path, function) = l.split_once('=').unwrap();
            let unquote = |s: &str| s.trim().trim_matches('"').to_string();
            (unquote(path), unquote(function))
        })
        .collect()
}

#[test]
fn the_routes_of_the_contract_are_deployed_and_served_locally_alike() {
    let deployed = template_routes(&template());
    let paths: BTreeSet<&str> = deployed.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        BTreeSet::from([
            "/daily-pot",
            "/daily-pot/claim",
            "/daily-pot/upload",
            "/upload",
            "/register-device",
            "/api/user/tiles"
        ])
    );
    assert_eq!(local_routes(), deployed);
}

/// The name a `!Ref` names, if `v` is one.
fn reference(v: &Value) -> Option<&str> {
    match v {
        Value::Tagged(t) if t.tag == "Ref" => t.value.as_str(),
        _ => None,
    }
}

#[test]
fn the_aggregation_job_runs_every_minute_one_at_a_time_and_is_created_disabled() {
    let t = template();
    let job = &t["Resources"]["AggregateSensorsFunction"]["Properties"];
    let schedule = &job["Events"]["EveryMinute"];
    assert_eq!(schedule["Type"].as_str(), Some("ScheduleV2"));
    let schedule = &schedule["Properties"];
    assert_eq!(
        schedule["ScheduleExpression"].as_str(),
        Some("rate(1 minute)")
    );
    // Its state is a parameter whose default keeps it off while the old server's
    // own job writes the same tables.
    let state = reference(&schedule["State"]).expect("State is a !Ref to a parameter");
    let parameter = &t["Parameters"][state];
    assert_eq!(parameter["Default"].as_str(), Some("DISABLED"));
    let allowed: Vec<String> =
        serde_yaml_ng::from_value(parameter["AllowedValues"].clone()).unwrap();
    assert_eq!(allowed, ["ENABLED", "DISABLED"]);
    // A failed run is redone by the next tick, never by a retry overlapping it.
    assert_eq!(number(&job["ReservedConcurrentExecutions"]), Some(1));
    assert_eq!(
        number(&job["EventInvokeConfig"]["MaximumRetryAttempts"]),
        Some(0)
    );
    assert_eq!(
        number(&schedule["RetryPolicy"]["MaximumRetryAttempts"]),
        Some(0)
    );
    // Its failures raise an alarm.
    let alarmed = t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .any(|a| {
            a["Properties"]["MetricName"].as_str() == Some("Errors")
                && reference(&a["Properties"]["Dimensions"][0]["Value"])
                    == Some("AggregateSensorsFunction")
        });
    assert!(alarmed, "an errors alarm on AggregateSensorsFunction");
}
