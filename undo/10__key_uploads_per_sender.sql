-- Undo of key_uploads_per_sender: back to V4's key (device_hash, timestamp_utc).
-- The keys go, as V4 allows at any time (every batch they key is in
-- sensor_batches); kept, two senders' keys of one device and timestamp would
-- collide in V4's primary key.
SET LOCAL lock_timeout = '5s';
TRUNCATE upload_keys;
ALTER TABLE upload_keys DROP CONSTRAINT upload_keys_pkey;
ALTER TABLE upload_keys DROP COLUMN sender;
ALTER TABLE upload_keys ADD PRIMARY KEY (device_hash, timestamp_utc);
