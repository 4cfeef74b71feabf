-- Users signed in through OpenID Connect, with their plan and metered credits.
CREATE TABLE users (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sub            text NOT NULL UNIQUE,
    email          text NOT NULL,
    email_verified boolean NOT NULL DEFAULT false,
    name           text,
    avatar_url     text,
    plan           text NOT NULL DEFAULT 'FREE' CHECK (plan IN ('FREE', 'PRO')),
    credits_used   integer NOT NULL DEFAULT 0 CHECK (credits_used >= 0),
    credits_limit  integer NOT NULL DEFAULT 0 CHECK (credits_limit >= 0),
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

-- One row per generation: reserved as 'pending', finalized as 'succeeded' or 'failed'.
CREATE TABLE generations (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    prompt        text NOT NULL,
    result        text,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'succeeded', 'failed')),
    model         text NOT NULL,
    input_tokens  integer,
    output_tokens integer,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz
);

-- A user's newest generations first (dashboard, history keyset pagination).
CREATE INDEX generations_user_newest_idx ON generations (user_id, created_at DESC, id DESC);

-- The sweeper looks only at reservations still pending.
CREATE INDEX generations_pending_idx ON generations (created_at) WHERE status = 'pending';
