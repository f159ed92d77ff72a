-- Up Migration
-- Emails "sent" by the email.send example task. The idempotency key makes a retried or
-- duplicated job a no-op instead of a second email.
CREATE TABLE outbox_emails (
  idempotency_key text PRIMARY KEY,
  recipient text NOT NULL,
  subject text NOT NULL,
  body text NOT NULL,
  sent_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_emails_sent_at ON outbox_emails (sent_at);

-- Down Migration
DROP TABLE outbox_emails;
