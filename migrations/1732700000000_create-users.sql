-- Up Migration
-- Accounts that can sign in (POST /api/auth/token). Passwords are scrypt hashes (src/auth/passwords.ts).
CREATE TABLE users (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  email text NOT NULL,
  password_hash text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_lower ON users (lower(email));

-- Down Migration
DROP TABLE users;
