-- Operator API tokens with an expiry, revocation and provenance; an operator role; revocable
-- enrollment tokens. Existing tokens (the built-in admin token) keep working: no expiry.
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
  CHECK (role IN ('admin', 'release-manager', 'operator', 'viewer'));
ALTER TABLE api_tokens
  ADD COLUMN expires_at timestamptz,
  ADD COLUMN revoked_at timestamptz,
  ADD COLUMN created_by text NOT NULL DEFAULT '',
  ADD COLUMN description text NOT NULL DEFAULT '';

ALTER TABLE enrollment_tokens ADD COLUMN revoked_at timestamptz;
