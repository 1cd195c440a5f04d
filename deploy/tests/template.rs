//! What `template.yaml` promises, checked: it lints clean with the pinned cfn-lint
//! (and that lint does reject broken templates), every function is in it, every
//! function's statement timeout is below its own Lambda timeout, and so is the
//! longest a stalled database can hold one of its requests, and release builds
//! unwind (a panic is caught, not the container's end); and (issue 10)
//! route functions reserve a bounded concurrency, the legacy URL is https, migrate
//! alone connects as the DDL user, no secret sits in any environment, and each
//! function may read exactly the secrets it names.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use deploy_checks::{local_routes, root};
use serde_yaml_ng::Value;

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
        (
            "a legacy server URL in plain http (its AllowedPattern wants https)",
            "legacy proxy.\n    Default: \"\"",
            "legacy proxy.\n    Default: \"http://old.example.com\"",
        ),
        (
            "a reserved concurrency that is not a number",
            "ReservedConcurrentExecutions: 1",
            "ReservedConcurrentExecutions: many",
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

#[test]
fn a_silent_database_holds_a_request_less_than_its_functions_timeout() {
    let t = template();
    for (id, f) in &functions(&t) {
        let timeout_s = number(&property(&t, f, "Timeout")).unwrap();
        let statement_ms =
            number(&f["Properties"]["Environment"]["Variables"]["DB_STATEMENT_TIMEOUT_MS"])
                .unwrap();
        // The template's DATABASE_URL names no connect_timeout: the derived one.
        let url = &environment(&t, f)["DATABASE_URL"];
        assert!(
            !format!("{url:?}").contains("connect_timeout"),
            "{id}: a connect_timeout in DATABASE_URL is not counted here"
        );
        let bounds = shared::db::Bounds::new(std::time::Duration::from_millis(statement_ms), None);
        // One call: a connect and a round trip, each up to its bound.
        let peak = bounds.per_call();
        assert!(
            peak < std::time::Duration::from_secs(timeout_s),
            "{id}: a stalled database holds a request up to {peak:?} (connect {:?}, round trip {:?}), \
             not below its Timeout {timeout_s}s",
            bounds.connect,
            bounds.round_trip
        );
    }
}

#[test]
fn the_release_profile_unwinds_so_a_panic_is_caught() {
    // With panic = "abort" a panic anywhere (a library's included) ends the
    // container: shared::runtime and lambda_runtime catch panics only by unwinding.
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let release = manifest
        .split("\n[")
        .find(|section| section.starts_with("profile.release]"))
        .expect("Cargo.toml has a [profile.release]");
    let panic = release
        .lines()
        .find_map(|l| l.trim().strip_prefix("panic"))
        .map(|rest| rest.trim_start_matches([' ', '=']).trim().to_string());
    assert!(
        panic.is_none() || panic.as_deref() == Some("\"unwind\""),
        "[profile.release] panic = {panic:?}: a panic would end the container"
    );
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
            "/api/user/tiles",
            "/health",
            "/analytics/aggregates",
            "/analytics/coverage",
            "/analytics/device-stats"
        ])
    );
    assert_eq!(local_routes(), deployed);
}

/// Every name `v` refers to: `!Ref X`, `!GetAtt X.Y` (as `X`), `${X}` in a `!Sub`
/// string, through `!If`, lists and maps. Pseudo parameters (`AWS::…`) left out.
fn references(v: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                match (tag.trim_start_matches('!'), &tagged.value) {
                    ("Ref", Value::String(name)) => {
                        out.insert(name.clone());
                    }
                    ("GetAtt", Value::String(name)) => {
                        out.insert(name.split('.').next().unwrap().to_string());
                    }
                    ("Sub", Value::String(text)) => {
                        for part in text.split("${").skip(1) {
                            out.insert(part.split('}').next().unwrap().to_string());
                        }
                    }
                    (_, inner) => walk(inner, out),
                }
            }
            Value::Sequence(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Mapping(m) => m.values().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(v, &mut out);
    out.retain(|name| !name.starts_with("AWS::"));
    out
}

/// A function's environment: the Globals' variables, overridden by its own.
fn environment(t: &Value, function: &Value) -> serde_yaml_ng::Mapping {
    let mut env = t["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .cloned()
        .unwrap_or_default();
    if let Some(own) = function["Properties"]["Environment"]["Variables"].as_mapping() {
        for (k, v) in own {
            env.insert(k.clone(), v.clone());
        }
    }
    env
}

fn has_http_route(function: &Value) -> bool {
    function["Properties"]["Events"]
        .as_mapping()
        .is_some_and(|events| {
            events
                .values()
                .any(|e| e["Type"].as_str() == Some("HttpApi"))
        })
}

/// The managed policies of the template attached to `function`, by logical id.
fn attached_policies(t: &Value, function: &Value) -> Vec<(String, Value)> {
    references(&function["Properties"]["Policies"])
        .into_iter()
        .filter(|id| {
            t["Resources"][id.as_str()]["Type"].as_str() == Some("AWS::IAM::ManagedPolicy")
        })
        .map(|id| {
            let policy = t["Resources"][id.as_str()].clone();
            (id, policy)
        })
        .collect()
}

/// The `Resource`s of the statements of `policies` allowing exactly `action`.
fn resources_allowed(policies: &[(String, Value)], action: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for (id, policy) in policies {
        let statements = policy["Properties"]["PolicyDocument"]["Statement"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{id} has statements"));
        for s in statements {
            let actions: Vec<String> = match &s["Action"] {
                Value::String(a) => vec![a.clone()],
                other => serde_yaml_ng::from_value(other.clone()).unwrap(),
            };
            assert!(
                actions.iter().all(|a| !a.contains('*')),
                "{id}: no wildcard actions"
            );
            if actions.iter().any(|a| a == action) {
                assert_eq!(
                    actions,
                    [action],
                    "{id}: {action} in a statement of its own"
                );
                out.push(s["Resource"].clone());
            }
        }
    }
    out
}

/// The functions that hold a small fixed number of containers (connections)
/// instead of `RouteConcurrency`: the unauthenticated health check, the analytics
/// API (a few consumers), and the jobs (one run at a time).
const SMALL_RESERVATIONS: [(&str, u64); 5] = [
    ("health", 2),
    ("analytics", 2),
    ("daily-reset", 1),
    ("aggregate-sensors", 1),
    ("migrate", 1),
];

#[test]
fn every_function_reserves_its_concurrency_so_connections_stay_within_max_connections() {
    let t = template();
    let param = &t["Parameters"]["RouteConcurrency"];
    assert_eq!(param["Type"].as_str(), Some("Number"));
    assert!(number(&param["MinValue"]).is_some_and(|min| min >= 1));
    let functions = functions(&t);
    let mut scaled = 0;
    let mut fixed = 0;
    for (id, f) in &functions {
        let binary = f["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap();
        let reserved = &f["Properties"]["ReservedConcurrentExecutions"];
        match SMALL_RESERVATIONS.iter().find(|(b, _)| *b == binary) {
            Some((_, n)) => {
                assert_eq!(number(reserved), Some(*n), "{id}");
                fixed += n;
            }
            None => {
                assert!(has_http_route(f), "{id}: a job reserves a fixed number");
                assert_eq!(
                    references(reserved),
                    BTreeSet::from(["RouteConcurrency".to_string()]),
                    "{id}: ReservedConcurrentExecutions: !Ref RouteConcurrency"
                );
                scaled += 1;
            }
        }
    }
    // The description does the arithmetic for the functions the template has.
    let description = param["Description"].as_str().unwrap();
    for needed in [
        "max_connections".to_string(),
        format!("{scaled} x RouteConcurrency + {fixed}"),
    ] {
        assert!(
            description.contains(&needed),
            "say {needed:?}: {description}"
        );
    }
}

/// `RouteSettings` of each HttpApi event of the function with logical id `id`.
fn route_settings(t: &Value, id: &str) -> Vec<(String, Value)> {
    t["Resources"][id]["Properties"]["Events"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|e| e["Type"].as_str() == Some("HttpApi"))
        .map(|e| {
            let p = &e["Properties"];
            (
                p["Path"].as_str().unwrap().to_string(),
                p["RouteSettings"].clone(),
            )
        })
        .collect()
}

#[test]
fn the_health_check_and_the_analytics_api_are_throttled_route_by_route() {
    // /health is unauthenticated and the analytics routes are heavy: each route
    // has a limit of its own below the API's default, and keeps its metrics (a
    // route's settings replace the default ones).
    let t = template();
    let default_rate = number(&t["Parameters"]["ThrottlingRateLimit"]["Default"]).unwrap();
    for (id, routes) in [("HealthFunction", 1), ("AnalyticsFunction", 3)] {
        let settings = route_settings(&t, id);
        assert_eq!(settings.len(), routes, "{id}");
        for (path, s) in settings {
            let rate = number(&s["ThrottlingRateLimit"]).unwrap_or_else(|| panic!("{path}"));
            assert!(
                (1..=10).contains(&rate) && rate < default_rate,
                "{path}: {rate}"
            );
            assert!(number(&s["ThrottlingBurstLimit"]).is_some(), "{path}");
            assert_eq!(s["DetailedMetricsEnabled"].as_bool(), Some(true), "{path}");
        }
    }
}

#[test]
fn the_legacy_server_url_is_https_or_empty() {
    let t = template();
    let param = &t["Parameters"]["LegacyServerUrl"];
    let pattern = param["AllowedPattern"]
        .as_str()
        .expect("LegacyServerUrl has an AllowedPattern");
    // CloudFormation matches the whole value.
    let allowed = regex_lite::Regex::new(&format!("^(?:{pattern})$")).unwrap();
    for good in [
        "",
        "https://old.example.com",
        "https://old.example.com/base",
    ] {
        assert!(allowed.is_match(good), "{good:?} is refused");
    }
    for bad in [
        "http://old.example.com",
        "old.example.com",
        "ftp://old.example.com",
        "https://",
        " https://old.example.com",
        "https://old.example.com extra",
    ] {
        assert!(!allowed.is_match(bad), "{bad:?} is accepted");
    }
    let default = param["Default"].as_str().unwrap();
    assert!(allowed.is_match(default));
    // Empty means no legacy proxy: the condition says so.
    assert!(
        serde_yaml_ng::to_string(&t["Conditions"]["ProxyLegacyRoutes"])
            .unwrap()
            .contains("LegacyServerUrl")
    );
}

/// The user a `DATABASE_URL` value (`!Sub "postgres://${User}@…"`) connects as,
/// checking that it carries no password.
fn database_user(id: &str, url: &Value) -> String {
    let text = serde_yaml_ng::to_string(url).unwrap();
    let userinfo = text
        .split("postgres://")
        .nth(1)
        .and_then(|rest| rest.split_once('@'))
        .unwrap_or_else(|| panic!("{id}: DATABASE_URL names a user: {text}"))
        .0;
    assert!(
        !userinfo.contains(':'),
        "{id}: a password in DATABASE_URL: {text}"
    );
    userinfo
        .strip_prefix("${")
        .and_then(|u| u.strip_suffix('}'))
        .unwrap_or_else(|| panic!("{id}: the user is a parameter: {text}"))
        .to_string()
}

#[test]
fn migrate_connects_as_its_own_user_and_every_other_function_as_the_dml_user() {
    let t = template();
    for name in ["DatabaseUser", "MigrateDatabaseUser"] {
        assert_eq!(
            t["Parameters"][name]["Type"].as_str(),
            Some("String"),
            "{name}"
        );
    }
    for (id, f) in functions(&t) {
        let env = environment(&t, &f);
        let user = database_user(&id, &env["DATABASE_URL"]);
        let migrate = f["Metadata"]["BuildProperties"]["Binary"].as_str() == Some("migrate");
        let expected = if migrate {
            "MigrateDatabaseUser"
        } else {
            "DatabaseUser"
        };
        assert_eq!(user, expected, "{id}");
        if migrate {
            // Behind RDS Proxy it sets the DML user's statement timeout.
            assert_eq!(
                references(&env["DB_APP_ROLE"]),
                BTreeSet::from(["DatabaseUser".to_string()]),
                "{id}: DB_APP_ROLE"
            );
        }
        // IAM: rds-db:connect as that user only.
        let policies = attached_policies(&t, &f);
        let connect = resources_allowed(&policies, "rds-db:connect");
        assert_eq!(connect.len(), 1, "{id}: one rds-db:connect statement");
        let resource = serde_yaml_ng::to_string(&connect[0]).unwrap();
        assert!(
            resource
                .trim_end()
                .ends_with(&format!("dbuser:${{DatabaseResourceId}}/${{{expected}}}")),
            "{id}: {resource}"
        );
    }
}

#[test]
fn no_secret_is_resolved_into_a_functions_environment() {
    let text = template_text();
    // Anyone allowed lambda:GetFunctionConfiguration reads a function's environment.
    assert!(
        !text.contains("{{resolve:"),
        "a dynamic reference resolved at deploy time"
    );
    let t = template();
    for (name, p) in t["Parameters"].as_mapping().unwrap() {
        assert!(
            p["NoEcho"].is_null(),
            "{name:?}: a secret passed as a parameter"
        );
    }
    let secret_variables: BTreeSet<&str> = shared::config::secrets::SECRETS
        .iter()
        .map(|s| s.name)
        .collect();
    for (id, f) in functions(&t) {
        for (name, _) in environment(&t, &f) {
            let name = name.as_str().unwrap();
            assert!(
                !secret_variables.contains(name),
                "{id}: {name} in its environment"
            );
        }
    }
}

#[test]
fn each_function_may_read_exactly_the_secrets_its_environment_names() {
    let t = template();
    let arn_variables: BTreeSet<&str> = shared::config::secrets::SECRETS
        .iter()
        .map(|s| s.arn_variable)
        .collect();
    for (id, f) in functions(&t) {
        let env = environment(&t, &f);
        let mut named = BTreeSet::new();
        for (name, value) in &env {
            let name = name.as_str().unwrap();
            if name.ends_with("_SECRET_ARN") {
                assert!(
                    arn_variables.contains(name),
                    "{id}: the code reads no {name}"
                );
                named.extend(references(value));
            }
        }
        // secretsmanager:GetSecretValue on exactly those secrets, each by its ARN.
        let policies = attached_policies(&t, &f);
        let mut granted = BTreeSet::new();
        for resource in resources_allowed(&policies, "secretsmanager:GetSecretValue") {
            let refs = references(&resource);
            assert_eq!(
                refs.len(),
                1,
                "{id}: one secret per statement: {resource:?}"
            );
            let parameter = refs.into_iter().next().unwrap();
            assert!(
                t["Parameters"][parameter.as_str()]["AllowedPattern"]
                    .as_str()
                    .is_some_and(|p| p.contains(":secretsmanager:")),
                "{id}: {parameter} must be a Secrets Manager ARN"
            );
            granted.insert(parameter);
        }
        assert_eq!(granted, named, "{id}: the secrets it may read");
    }
    // The app key where it is checked (and where the analytics keys must differ
    // from it); the hash secret where batches are stored; the analytics keys in
    // the analytics function only.
    let upload = environment(&t, &t["Resources"]["UploadBatchFunction"]);
    let register = environment(&t, &t["Resources"]["RegisterDeviceFunction"]);
    let analytics = environment(&t, &t["Resources"]["AnalyticsFunction"]);
    for (env, variable) in [
        (&upload, "API_KEY_SECRET_ARN"),
        (&upload, "HASH_SECRET_SECRET_ARN"),
        (&register, "API_KEY_SECRET_ARN"),
        (&analytics, "API_KEY_SECRET_ARN"),
        (&analytics, "ANALYTICS_API_KEYS_SECRET_ARN"),
    ] {
        assert!(env.contains_key(variable), "{variable}");
    }
    for (id, f) in functions(&t) {
        let has = environment(&t, &f).contains_key("ANALYTICS_API_KEYS_SECRET_ARN");
        assert_eq!(has, id == "AnalyticsFunction", "{id}");
    }
}

#[test]
fn an_alarm_watches_the_use_of_expired_signing_keys() {
    let t = template();
    let watched = t["Resources"].as_mapping().unwrap().values().any(|r| {
        r["Type"].as_str() == Some("AWS::CloudWatch::Alarm")
            && r["Properties"]["Namespace"].as_str() == Some("DailyPot")
            && r["Properties"]["MetricName"].as_str()
                == Some(shared::telemetry::Metric::StaleSigningKeyUsed.name())
            && r["Properties"]["Dimensions"].is_null()
            && !r["Properties"]["AlarmActions"].is_null()
    });
    assert!(
        watched,
        "no alarm on {}",
        shared::telemetry::Metric::StaleSigningKeyUsed.name()
    );
}

#[test]
fn every_function_is_traced_by_x_ray() {
    let t = template();
    for (id, f) in functions(&t) {
        assert_eq!(
            property(&t, &f, "Tracing").as_str(),
            Some("Active"),
            "{id} is not traced"
        );
    }
}

/// The dashboard's body as JSON, with every `${…}` of its `!Sub` replaced by "X".
fn dashboard_body(t: &Value) -> serde_json::Value {
    let dashboards: Vec<&Value> = t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::CloudWatch::Dashboard"))
        .collect();
    assert_eq!(dashboards.len(), 1, "one operations dashboard");
    let Value::Tagged(sub) = &dashboards[0]["Properties"]["DashboardBody"] else {
        panic!("DashboardBody is a !Sub");
    };
    let text = sub.value.as_str().expect("a !Sub of a string");
    let mut plain = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        plain.push_str(&rest[..start]);
        plain.push('X');
        rest = &rest[start + rest[start..].find('}').unwrap() + 1..];
    }
    plain.push_str(rest);
    serde_json::from_str(&plain).expect("the dashboard body is JSON")
}

#[test]
fn the_dashboard_shows_what_an_operator_opens_first() {
    let body = dashboard_body(&template());
    let titles: Vec<String> = body["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["properties"]["title"].as_str().unwrap().to_lowercase())
        .collect();
    for wanted in [
        "requests",
        "4xx and 5xx by route",
        "p50",
        "p99",
        "cold starts",
        "uploads: accepted, duplicate",
        "claims paid",
        "reset",
        "slow queries",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(wanted)),
            "no graph of {wanted:?} in {titles:?}"
        );
    }
}

#[test]
fn the_dashboard_graphs_only_metrics_the_code_emits() {
    let body = dashboard_body(&template()).to_string();
    // Plain metric rows (["DailyPot", "<name>", …]) and SEARCH expressions
    // (MetricName=\"<name>\") of our namespace.
    let mut graphed = BTreeSet::new();
    for part in body.split("[\"DailyPot\",\"").skip(1) {
        graphed.insert(part.split('"').next().unwrap().to_string());
    }
    for part in body.split("{DailyPot,").skip(1) {
        let name = part.split("MetricName=\\\"").nth(1).unwrap();
        graphed.insert(name.split('\\').next().unwrap().to_string());
    }
    assert!(graphed.len() >= 7, "{graphed:?}");
    for name in &graphed {
        assert!(
            shared::telemetry::Metric::NAMES.contains(&name.as_str()),
            "the dashboard graphs {name:?}, which no code emits"
        );
    }
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

#[test]
fn every_alarm_on_our_metrics_watches_one_the_code_emits_by_its_deployed_function() {
    let t = template();
    let ours: Vec<&Value> = t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .filter(|r| r["Properties"]["Namespace"].as_str() == Some("DailyPot"))
        .collect();
    assert!(ours.len() >= 2, "the stale-key and skipped-batch alarms");
    for alarm in ours {
        let p = &alarm["Properties"];
        let name = p["MetricName"].as_str().unwrap();
        assert!(
            shared::telemetry::Metric::NAMES.contains(&name),
            "an alarm on {name}, which no code emits"
        );
        // The Function dimension is the deployed name (AWS_LAMBDA_FUNCTION_NAME),
        // never a literal that no data point would carry.
        for dimension in p["Dimensions"].as_sequence().into_iter().flatten() {
            if dimension["Name"].as_str() == Some("Function") {
                let Value::Tagged(r) = &dimension["Value"] else {
                    panic!("{name}: the Function dimension is a !Ref to the function");
                };
                assert_eq!(r.tag, "Ref", "{name}");
            }
        }
    }
}
