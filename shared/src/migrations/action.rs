//! What `migrate` is asked to do: from a Lambda event or from the command line.
//! Anything it does not know is an error, never a migration run.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Apply pending migrations (after the shape check).
    Migrate,
    /// The shape check and the index/table reports; changes nothing.
    Audit,
    /// Convert the remaining plain-text device secrets (once the old server is off).
    Cutover { force: bool },
    /// Undo every migration of ours, newest first.
    Rollback,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ActionError(String);

const USAGE: &str = "actions: migrate (the default), audit, cutover [force], rollback";

impl Action {
    /// `{}` or `{"action":"migrate"}` migrates; `{"action":"audit"}`,
    /// `{"action":"cutover"}` (`"force": true` to skip its safety check) and
    /// `{"action":"rollback"}`. Other events (a scheduled event, say) carry no
    /// `action` and migrate.
    pub fn from_event(event: &Value) -> Result<Self, ActionError> {
        let action = match event.get("action") {
            None | Some(Value::Null) => "migrate",
            Some(Value::String(s)) => s.as_str(),
            Some(other) => {
                return Err(ActionError(format!(
                    "\"action\" must be a string, got {other}; {USAGE}"
                )))
            }
        };
        let force = match event.get("force") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(ActionError(format!(
                    "\"force\" must be true or false, got {other}"
                )))
            }
        };
        let parsed = Self::named(action, force)?;
        if force && !matches!(parsed, Self::Cutover { .. }) {
            return Err(ActionError(format!(
                "\"force\" applies to the cutover only, not to {action:?}"
            )));
        }
        Ok(parsed)
    }

    /// `migrate [migrate|audit|cutover [--force]|rollback]`.
    pub fn from_args<I: IntoIterator<Item = String>>(args: I) -> Result<Self, ActionError> {
        let args: Vec<String> = args.into_iter().collect();
        match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            [] => Ok(Self::Migrate),
            ["cutover", "--force"] => Ok(Self::Cutover { force: true }),
            [one] => Self::named(one, false),
            _ => Err(ActionError(format!(
                "unexpected arguments {args:?}; usage: migrate [migrate | audit | cutover [--force] | rollback]"
            ))),
        }
    }

    fn named(action: &str, force: bool) -> Result<Self, ActionError> {
        match action {
            "migrate" => Ok(Self::Migrate),
            "audit" => Ok(Self::Audit),
            "cutover" => Ok(Self::Cutover { force }),
            "rollback" => Ok(Self::Rollback),
            other => Err(ActionError(format!("unknown action {other:?}; {USAGE}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_event_without_action_or_with_migrate_migrates() {
        for event in [
            json!({}),
            json!({"action": "migrate"}),
            json!({"action": null}),
            json!({"source": "aws.events", "detail-type": "Scheduled Event"}),
            json!("not even an object"),
        ] {
            assert_eq!(Action::from_event(&event), Ok(Action::Migrate), "{event}");
        }
    }

    #[test]
    fn each_known_action_is_recognised() {
        assert_eq!(
            Action::from_event(&json!({"action": "audit"})),
            Ok(Action::Audit)
        );
        assert_eq!(
            Action::from_event(&json!({"action": "rollback"})),
            Ok(Action::Rollback)
        );
        assert_eq!(
            Action::from_event(&json!({"action": "cutover"})),
            Ok(Action::Cutover { force: false })
        );
        assert_eq!(
            Action::from_event(&json!({"action": "cutover", "force": true})),
            Ok(Action::Cutover { force: true })
        );
    }

    #[test]
    fn an_unknown_or_malformed_action_is_an_error() {
        for event in [
            json!({"action": "migrat"}),
            json!({"action": "ROLLBACK"}),
            json!({"action": ""}),
            json!({"action": 1}),
            json!({"action": ["migrate"]}),
            json!({"action": "cutover", "force": "yes"}),
            json!({"action": "rollback", "force": true}),
        ] {
            assert!(Action::from_event(&event).is_err(), "{event}");
        }
    }

    #[test]
    fn the_command_line_takes_the_same_actions() {
        let args = |a: &[&str]| Action::from_args(a.iter().map(|s| s.to_string()));
        assert_eq!(args(&[]), Ok(Action::Migrate));
        assert_eq!(args(&["migrate"]), Ok(Action::Migrate));
        assert_eq!(args(&["audit"]), Ok(Action::Audit));
        assert_eq!(args(&["rollback"]), Ok(Action::Rollback));
        assert_eq!(args(&["cutover"]), Ok(Action::Cutover { force: false }));
        assert_eq!(
            args(&["cutover", "--force"]),
            Ok(Action::Cutover { force: true })
        );
        assert!(args(&["cutover", "force"]).is_err());
        assert!(args(&["rollback", "--force"]).is_err());
        assert!(args(&["roll-back"]).is_err());
    }
}
