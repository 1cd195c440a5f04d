//! The claims of a Firebase ID token and the checks every token must pass, signed
//! or (emulator) not: one place, so both paths apply the same rules.

use serde::Deserialize;

use super::{AuthError, UserId};

/// The most characters a Firebase user id may have.
const MAX_SUB_CHARS: usize = 128;

/// The claims we check; others are ignored. Times are seconds since the epoch.
#[derive(Debug, Deserialize)]
pub(crate) struct Claims {
    exp: Option<i64>,
    iat: Option<i64>,
    auth_time: Option<i64>,
    aud: Option<String>,
    iss: Option<String>,
    sub: Option<String>,
}

/// What a token must match, and the clock it is checked against.
pub(crate) struct Expected<'a> {
    pub audience: &'a str,
    pub issuer: &'a str,
    pub now: i64,
    pub leeway: i64,
}

impl Claims {
    /// When the token expires (seconds since the epoch), if it says.
    pub(crate) fn exp(&self) -> Option<i64> {
        self.exp
    }

    /// Applies the rules of docs/api.md, "Firebase ID token"; the user id when all hold.
    pub(crate) fn check(self, expected: &Expected<'_>) -> Result<UserId, AuthError> {
        let Expected {
            audience,
            issuer,
            now,
            leeway,
        } = *expected;
        // Saturating: the bounds come from our clock and configuration, never overflow.
        let (earliest, latest) = (now.saturating_sub(leeway), now.saturating_add(leeway));
        let exp = self.exp.ok_or(AuthError::Invalid("no exp"))?;
        if exp <= earliest {
            return Err(AuthError::Expired);
        }
        let iat = self.iat.ok_or(AuthError::Invalid("no iat"))?;
        if iat > latest {
            return Err(AuthError::Invalid("iat in the future"));
        }
        let auth_time = self.auth_time.ok_or(AuthError::Invalid("no auth_time"))?;
        if auth_time > latest {
            return Err(AuthError::Invalid("auth_time in the future"));
        }
        if self.aud.as_deref() != Some(audience) {
            return Err(AuthError::Invalid("wrong aud"));
        }
        if self.iss.as_deref() != Some(issuer) {
            return Err(AuthError::Invalid("wrong iss"));
        }
        match self.sub {
            Some(sub) if !sub.is_empty() && sub.chars().count() <= MAX_SUB_CHARS => Ok(UserId(sub)),
            Some(sub) if sub.is_empty() => Err(AuthError::Invalid("empty sub")),
            Some(_) => Err(AuthError::Invalid("sub longer than 128 characters")),
            None => Err(AuthError::Invalid("no sub")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn expected() -> Expected<'static> {
        Expected {
            audience: "demo",
            issuer: "https://securetoken.google.com/demo",
            now: NOW,
            leeway: 30,
        }
    }

    fn claims() -> Claims {
        Claims {
            exp: Some(NOW + 3600),
            iat: Some(NOW - 10),
            auth_time: Some(NOW - 100),
            aud: Some("demo".into()),
            iss: Some("https://securetoken.google.com/demo".into()),
            sub: Some("u1".into()),
        }
    }

    #[test]
    fn valid_claims_yield_the_user() {
        assert_eq!(claims().check(&expected()).unwrap().as_str(), "u1");
    }

    #[test]
    fn a_little_clock_skew_is_tolerated_and_more_is_not() {
        let skewed = Claims {
            iat: Some(NOW + 20),
            exp: Some(NOW - 20),
            ..claims()
        };
        assert!(skewed.check(&expected()).is_ok());
        let late = Claims {
            exp: Some(NOW - 31),
            ..claims()
        };
        assert_eq!(late.check(&expected()), Err(AuthError::Expired));
    }

    #[test]
    fn every_time_claim_is_required() {
        for c in [
            Claims {
                exp: None,
                ..claims()
            },
            Claims {
                iat: None,
                ..claims()
            },
            Claims {
                auth_time: None,
                ..claims()
            },
        ] {
            assert!(matches!(c.check(&expected()), Err(AuthError::Invalid(_))));
        }
    }

    #[test]
    fn a_sub_of_128_characters_is_accepted() {
        let c = Claims {
            sub: Some("é".repeat(128)),
            ..claims()
        };
        assert!(c.check(&expected()).is_ok());
    }
}
