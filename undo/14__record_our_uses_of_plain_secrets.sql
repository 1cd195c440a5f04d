-- Undo of V14: the record of our uses goes. Nothing of the old server's is in it;
-- device_secrets keeps every row and last_used_at as it was.
DROP TABLE IF EXISTS device_secret_uses;
