//! An error with its causes, as one line for logs and operators. Imports nothing of
//! ours, so every layer (secrets, database, jobs, HTTP) can use it.

/// `error: cause: cause…`, for logs and operators. A cause the text already quotes
/// (an error whose message embeds its source) is not repeated.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_names_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("undo of V3: {0}")]
        struct Outer(#[source] std::io::Error);
        let err = Outer(std::io::Error::other("lock timeout"));
        assert_eq!(chain(&err), "undo of V3: lock timeout");
    }
}
