//! The daily pot's SQL. "Today" is always the UTC day computed here, never the
//! session's `TimeZone`; `uploads_today` counts the day in `uploads_day` (V3).

use crate::db::Query;

/// The pot of `$1` (text), as the app sees it; no row when there is none yet.
///
/// A plain primary-key read, so a known user's GET writes nothing and, prepared,
/// costs the server what any prepared key lookup does (backend CPU per statement
/// sent back to back: ~24 us, a bare `SELECT *` by key ~19 us; `scripts/bench` sets
/// the GET beside a prepared `SELECT *` of the same pots: BENCHMARKS.md).
/// The data-modifying CTE it replaces (insert on first sight in the same
/// statement) cost ~50 us prepared: a statement with an INSERT in it is set up as
/// a write every time, even when it inserts nothing.
pub const POT: Query = Query::new(
    "daily_pot_get",
    "SELECT user_id,
            total_credits,
            -- A count stamped with an earlier day is not today's.
            CASE WHEN uploads_day = (now() AT TIME ZONE 'UTC')::date
                 THEN uploads_today ELSE 0 END AS uploads_today,
            uploads_required,
            last_claim_date,
            COALESCE(last_claim_date = (now() AT TIME ZONE 'UTC')::date, false)
                AS has_claimed_today
     FROM daily_pots
     WHERE user_id = $1",
);

/// Creates the pot of `$1` (text) with the defaults and returns it, after [`POT`]
/// found none. When a concurrent first request created it in between, the INSERT
/// waits for that one to commit, then does nothing and returns no row: the caller
/// reads it with [`POT`] (a new statement, so a new snapshot that sees it).
pub const CREATE: Query = Query::new(
    "daily_pot_create",
    "INSERT INTO daily_pots (user_id, uploads_day)
     VALUES ($1, (now() AT TIME ZONE 'UTC')::date)
     ON CONFLICT (user_id) DO NOTHING
     RETURNING user_id, total_credits, uploads_today, uploads_required, last_claim_date,
               COALESCE(last_claim_date = (now() AT TIME ZONE 'UTC')::date, false)
                   AS has_claimed_today",
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
