//! A user's pot as the app sees it.

use chrono::NaiveDate;
use serde::Serialize;
use tokio_postgres::Row;

/// The JSON the app parses: the field order and spelling are the contract's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyPot {
    pub user_id: String,
    pub total_credits: i32,
    /// Today's uploads (a count from an earlier day reads as 0).
    pub uploads_today: i32,
    pub uploads_required: i32,
    pub is_unlocked: bool,
    pub has_claimed_today: bool,
    /// Serialized as `"YYYY-MM-DD"` or `null`.
    pub last_claim_date: Option<NaiveDate>,
}

impl DailyPot {
    /// From a row of the pot queries, whose columns are named like the fields.
    pub(crate) fn from_row(row: &Row) -> Self {
        let uploads_today: i32 = row.get("uploads_today");
        let uploads_required: i32 = row.get("uploads_required");
        let has_claimed_today: bool = row.get("has_claimed_today");
        Self {
            user_id: row.get("user_id"),
            total_credits: row.get("total_credits"),
            uploads_today,
            uploads_required,
            is_unlocked: uploads_today >= uploads_required && !has_claimed_today,
            has_claimed_today,
            last_claim_date: row.get("last_claim_date"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_has_the_contracts_fields_in_order_and_a_plain_date() {
        let pot = DailyPot {
            user_id: "u1".into(),
            total_credits: 35,
            uploads_today: 0,
            uploads_required: 5,
            is_unlocked: false,
            has_claimed_today: true,
            last_claim_date: NaiveDate::from_ymd_opt(2026, 11, 26),
        };
        assert_eq!(
            serde_json::to_string(&pot).unwrap(),
            r#"{"userId":"u1","totalCredits":35,"uploadsToday":0,"uploadsRequired":5,"isUnlocked":false,"hasClaimedToday":true,"lastClaimDate":"2026-11-26"}"#
        );
    }
}
