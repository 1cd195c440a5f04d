-- Retries are recognised per sender (docs/api.md, "What is stored"): the key of a
-- batch we store becomes (device_hash, timestamp_utc, sender), the sender being
-- the user the batch is stored for, or '' when it is anonymous (no user id is
-- empty: tokens with an empty sub are refused). With V4's (device_hash,
-- timestamp_utc), an anonymous upload naming someone's device_id and timestamp
-- first turned the owner's real batch into a dropped duplicate.
--
-- V4's keys do not say whose batch they key, and none is needed once its batch is
-- committed (our storing statement also looks in sensor_batches, per sender now),
-- so the table is emptied, as V4 allows at any time, and keyed anew: instant
-- whatever its size. TRUNCATE waits only for our own uploads in flight (the old
-- server never touches this table), which then find their batches in
-- sensor_batches. Nothing here touches sensor_batches.
--
-- The default keeps a storing statement of the previous release working while
-- both run during a deploy (it names no sender: its keys read as anonymous).
SET LOCAL lock_timeout = '5s';
TRUNCATE upload_keys;
ALTER TABLE upload_keys ADD COLUMN sender TEXT NOT NULL DEFAULT '';
ALTER TABLE upload_keys DROP CONSTRAINT upload_keys_pkey;
ALTER TABLE upload_keys ADD PRIMARY KEY (device_hash, timestamp_utc, sender);
