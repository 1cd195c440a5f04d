-- Undo of V4: the key table goes. Nothing of the old server's is in it, and no
-- batch is lost: every batch it keys is in sensor_batches.
DROP TABLE IF EXISTS upload_keys;
