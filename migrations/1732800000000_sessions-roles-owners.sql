-- Up Migration
-- One service across every process and replica: sign-in sessions live here, where every process of
-- every level reads them, so a logout or a reused refresh token holds everywhere at once.

-- Roles and disabling: read on every authenticated request, so a change takes effect on the next one.
ALTER TABLE users
  ADD COLUMN role text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
  ADD COLUMN disabled_at timestamptz;
-- The first user of an existing install keeps the powers it had (every user could change anything).
UPDATE users SET role = 'admin' WHERE id = (SELECT min(id) FROM users);

-- A sign-in session and its refresh-token family: refresh_token_id is the one refresh token that may be
-- used next; presenting an older one of the family is reuse and revokes the session. expires_at is the
-- absolute end (AUTH_SESSION_MAX_AGE), whatever the refreshes. Deleting a user deletes its sessions.
CREATE TABLE auth_sessions (
  id uuid PRIMARY KEY,
  user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  refresh_token_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  refreshed_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz,
  revoked_reason text
);
CREATE INDEX auth_sessions_user_id ON auth_sessions (user_id);
CREATE INDEX auth_sessions_expires_at ON auth_sessions (expires_at);

-- Rate-limit counters when no Redis is configured: one row per key and window. UNLOGGED: no WAL on
-- the hot path; a PostgreSQL crash empties it, which only restarts the windows.
CREATE UNLOGGED TABLE rate_limits (
  key text PRIMARY KEY,
  hits integer NOT NULL,
  expires_at timestamptz NOT NULL
);
CREATE INDEX rate_limits_expires_at ON rate_limits (expires_at);

-- Items have an owner: only the owner or an admin may change or delete one. Rows from before have
-- none (admins only); a deleted user's items stay, owned by no one.
ALTER TABLE items ADD COLUMN owner_id bigint REFERENCES users (id) ON DELETE SET NULL;
CREATE INDEX items_owner_id ON items (owner_id);

-- Down Migration
DROP INDEX items_owner_id;
ALTER TABLE items DROP COLUMN owner_id;
DROP TABLE rate_limits;
DROP TABLE auth_sessions;
ALTER TABLE users DROP COLUMN disabled_at, DROP COLUMN role;
