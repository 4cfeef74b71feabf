-- E-mail verification by link: the nonce of the one link that may still be used (single use:
-- cleared when it is), and when the last link was sent (no new link at every sign-in).
ALTER TABLE users
    ADD COLUMN verify_nonce   text,
    ADD COLUMN verify_sent_at timestamptz;
