-- Our uses of the plain-text secrets the old server issued (docs/coexistence.md,
-- "Secrets during coexistence"). Until the cut-over such a row stays plain, and our
-- upload touches its last_used_at as the old server does; the cut-over's 24-hour
-- rule (and the runbook's query) must see the old server's uses only, which is still
-- serving its devices while it makes them.
--
-- One row per device whose plain-text secret our upload matched, written by the same
-- statement that touches last_used_at (shared/src/upload/store.rs):
--   used_at             = the last_used_at our upload wrote (the same now()), so a
--                         later last_used_at is the old server's (S1, S3);
--   old_server_used_at  = the old server's last use that our write replaced (the
--                         row's last_used_at, when it was newer than our used_at).
-- A device that never used us has no row: all its uses are the old server's.
-- Uses of ours before this table existed count as the old server's (the rule then
-- waits a day longer, never less).
--
-- A new table of ours: nothing of the old server's changes or is locked. No foreign
-- key to device_secrets (it would lock it while created, and check each write).
-- The cut-over empties it once it converted the plain-text rows.
CREATE TABLE IF NOT EXISTS device_secret_uses (
    device_id          TEXT        PRIMARY KEY,
    used_at            TIMESTAMPTZ NOT NULL,
    old_server_used_at TIMESTAMPTZ
);

COMMENT ON TABLE device_secret_uses IS
    'The Lambda backend''s last use of each plain-text device secret the old server issued (the cut-over tells the old server''s uses from ours)';
