-- Up Migration
-- Idempotency-Key (src/plugins/idempotency.ts): the first answer to a keyed POST or PATCH, kept so a
-- retry on any process or replica gets it again instead of a second effect. One row per key and user
-- (scope: the user id, '' when anonymous). status IS NULL while the first request is in flight: then
-- claim names the attempt that holds it, and a retry past the lease (claimed_at) may take it over.
-- expires_at is IDEMPOTENCY_KEY_TTL after the answer; expired rows are pruned by any process.
CREATE TABLE idempotency_keys (
  scope text NOT NULL,
  key text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
  fingerprint text NOT NULL,
  claim uuid NOT NULL,
  claimed_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  status smallint CHECK (status BETWEEN 100 AND 599),
  headers jsonb,
  body bytea,
  PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);

-- Down Migration
DROP TABLE idempotency_keys;
