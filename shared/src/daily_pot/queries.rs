//! The daily pot's SQL. "Today" is always the UTC day computed here, never the
//! session's `TimeZone`; `uploads_today` counts the day in `uploads_day` (V3).

use crate::db::Query;

/// The pot of `$1` (text), created with the defaults on first sight.
///
/// A known user costs this one read and writes nothing: the INSERT only runs
/// when the SELECT found no row. Under a race of first requests, the INSERT can
/// meet a row a concurrent statement committed after this statement's snapshot:
/// it then does nothing, no row comes back, and the caller runs it again (the
/// new snapshot sees the row).
pub const GET_OR_CREATE: Query = Query::new(
    "daily_pot_get_or_create",
    "WITH today AS (SELECT (now() AT TIME ZONE 'UTC')::date AS day),
     existing AS (
         SELECT user_id, total_credits, uploads_today, uploads_day, uploads_required,
                last_claim_date
         FROM daily_pots
         WHERE user_id = $1
     ),
     created AS (
         INSERT INTO daily_pots (user_id, uploads_day)
         SELECT $1, today.day FROM today
         WHERE NOT EXISTS (SELECT 1 FROM existing)
         ON CONFLICT (user_id) DO NOTHING
         RETURNING user_id, total_credits, uploads_today, uploads_day, uploads_required,
                   last_claim_date
     ),
     pot AS (SELECT * FROM existing UNION ALL SELECT * FROM created)
     SELECT pot.user_id,
            pot.total_credits,
            -- A count stamped with an earlier day is not today's.
            CASE WHEN pot.uploads_day = today.day THEN pot.uploads_today ELSE 0 END
                AS uploads_today,
            pot.uploads_required,
            pot.last_claim_date,
            COALESCE(pot.last_claim_date = today.day, false) AS has_claimed_today
     FROM pot, today",
);

/// Claims the pot of `$1` (text) for `$2` (int4) credits, atomically.
///
/// The UPDATE's WHERE is the rule (enough uploads today, not claimed today), so
/// of concurrent claims exactly one matches: the others wait for its row lock,
/// re-check the WHERE against the claimed row and match nothing. When nothing
/// was claimed, the second branch returns the pot as this statement's snapshot
/// saw it, so the caller can tell why; no row at all means no pot.
pub const CLAIM: Query = Query::new(
    "daily_pot_claim",
    "WITH today AS (SELECT (now() AT TIME ZONE 'UTC')::date AS day),
     claimed AS (
         UPDATE daily_pots AS pot
         SET total_credits = pot.total_credits + $2,
             last_claim_date = today.day,
             uploads_today = 0,
             uploads_day = today.day
         FROM today
         WHERE pot.user_id = $1
           AND pot.last_claim_date IS DISTINCT FROM today.day
           AND pot.uploads_day = today.day
           AND pot.uploads_today >= pot.uploads_required
         RETURNING pot.user_id, pot.total_credits, pot.uploads_required, pot.last_claim_date
     )
     SELECT true AS claimed, user_id, total_credits, 0 AS uploads_today, uploads_required,
            last_claim_date, true AS has_claimed_today
     FROM claimed
     UNION ALL
     SELECT false, pot.user_id, pot.total_credits,
            CASE WHEN pot.uploads_day = today.day THEN pot.uploads_today ELSE 0 END,
            pot.uploads_required, pot.last_claim_date,
            COALESCE(pot.last_claim_date = today.day, false)
     FROM daily_pots AS pot, today
     WHERE pot.user_id = $1 AND NOT EXISTS (SELECT 1 FROM claimed)",
);
