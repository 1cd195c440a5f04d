-- Device secrets are stored only as SHA-256 hashes (api.md, "Device secret" fix).
--
-- The stored form is 'sha256:' || base64(sha256(secret)): 51 characters, so it
-- fits the live varchar(64) column, and the prefix tells a hash from the old
-- server's plain text (64 hex characters, which a bare hex digest would look
-- like). shared/src/device/secret.rs computes exactly this form.

CREATE OR REPLACE FUNCTION hash_device_secret(plain text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT 'sha256:' || encode(sha256(convert_to(plain, 'UTF8')), 'base64')
$$;

-- A value already in the stored form; anything else is plain text.
CREATE OR REPLACE FUNCTION is_hashed_device_secret(secret text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT secret ~ '^sha256:[A-Za-z0-9+/]{43}=$'
$$;

-- While the old server still runs beside us, its registration route writes plain
-- text: hash it on the way in, so none is ever stored. Our own writes are already
-- hashed and pass unchanged. (In an INSERT ... ON CONFLICT DO UPDATE the proposed
-- row is hashed by the INSERT trigger before EXCLUDED is read.)
CREATE OR REPLACE FUNCTION hash_plain_device_secret() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT is_hashed_device_secret(NEW.secret) THEN
        NEW.secret := hash_device_secret(NEW.secret);
    END IF;
    RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS device_secrets_hash_plain_text ON device_secrets;
CREATE TRIGGER device_secrets_hash_plain_text
    BEFORE INSERT OR UPDATE OF secret ON device_secrets
    FOR EACH ROW EXECUTE FUNCTION hash_plain_device_secret();

-- The rows already there: the devices keep working (the app sends the same
-- secret, we look up its hash) and no plain text remains.
UPDATE device_secrets
SET secret = hash_device_secret(secret)
WHERE NOT is_hashed_device_secret(secret);
