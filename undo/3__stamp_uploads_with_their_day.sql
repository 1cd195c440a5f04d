-- Undo of V3: the old server's daily_pots again, every row kept.
--
-- uploads_today keeps its value; without uploads_day the old server reads it as it
-- always did (a count of an earlier day stays until its nightly reset or the next
-- claim). Dropping a column is a catalog change (no table rewrite), but it needs
-- the table's exclusive lock for a moment: give up after a few seconds rather than
-- queue every pot request behind a long statement (the rollback can be re-run; it
-- resumes with this step).
SET LOCAL lock_timeout = '3s';

DROP TRIGGER IF EXISTS daily_pots_stamp_uploads_day ON daily_pots;
DROP FUNCTION IF EXISTS stamp_daily_pots_uploads_day();
ALTER TABLE daily_pots DROP COLUMN IF EXISTS uploads_day;
