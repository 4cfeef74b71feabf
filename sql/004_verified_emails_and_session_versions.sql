-- Only a verified address is unique. An unverified claim (another provider account, or a
-- provider that does not verify) keeps its own row and never blocks the verified owner.
DROP INDEX users_email_lower_key;
CREATE UNIQUE INDEX users_verified_email_key ON users (lower(email)) WHERE email_verified;
CREATE INDEX users_email_lower_idx ON users (lower(email));

-- The sign-in cookie carries "<user id>.<session version>"; a request whose version is not the
-- row's is signed out. Signing out moves the version on, so no copy of an old cookie works.
ALTER TABLE users ADD COLUMN session_version integer NOT NULL DEFAULT 1;
