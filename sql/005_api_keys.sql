-- API keys: revocable credentials for scripts. Only the SHA-256 of the secret is stored; the key
-- itself is shown once at creation. `prefix` (the key's first characters) names it in lists and
-- finds it at sign-in; the hash is then compared in constant time. Revoking keeps the row, so
-- generations made with the key still name it in usage reports.
CREATE TABLE api_keys (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    prefix       text NOT NULL,
    secret_hash  bytea NOT NULL UNIQUE CHECK (octet_length(secret_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    -- The target of generations' (api_key_id, user_id): a generation names only its owner's key.
    UNIQUE (id, user_id)
);

-- Bearer sign-in looks an active key up by its prefix.
CREATE INDEX api_keys_active_prefix_idx ON api_keys (prefix) WHERE revoked_at IS NULL;
-- A user's active keys (the list, and the limit of 10 checked at creation).
CREATE INDEX api_keys_user_active_idx ON api_keys (user_id, created_at) WHERE revoked_at IS NULL;

-- The key that made each generation; NULL for the browser.
ALTER TABLE generations
    ADD COLUMN api_key_id bigint,
    ADD CONSTRAINT generations_api_key_owner_fkey
        FOREIGN KEY (api_key_id, user_id) REFERENCES api_keys (id, user_id);

-- GET /api/usage's per-key figures: an index-only scan of the generations keys made (browser
-- generations, all the existing rows among them, are not in this index).
CREATE INDEX generations_user_key_usage_idx ON generations (user_id, created_at)
    INCLUDE (api_key_id, output_tokens) WHERE api_key_id IS NOT NULL;
