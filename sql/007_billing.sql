-- Billing: monthly credit periods and the Stripe subscription behind a PRO plan.

-- The credit period the counter credits_used belongs to: a UTC calendar month. The reservation
-- transaction rolls an ended period forward (and resets the counter), so no cron job is needed.
ALTER TABLE users
    ADD COLUMN period_start timestamptz NOT NULL
        DEFAULT (date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'),
    ADD COLUMN period_end   timestamptz NOT NULL
        DEFAULT ((date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month')
                 AT TIME ZONE 'UTC'),
    ADD COLUMN stripe_customer_id     text UNIQUE,
    ADD COLUMN stripe_subscription_id text,
    -- The `created` time of the last subscription event applied: an older one changes nothing.
    ADD COLUMN stripe_event_at        timestamptz;

-- The period a generation's credit was charged to: its refund must not touch a later period.
-- Every earlier generation belongs to the first period, which credits_used counts until now.
ALTER TABLE generations ADD COLUMN credit_period timestamptz;
UPDATE generations SET credit_period = users.period_start
    FROM users WHERE users.id = generations.user_id;

-- Stripe events applied, by id: a replayed delivery is recognised and changes nothing.
CREATE TABLE stripe_events (
    id          text PRIMARY KEY,
    type        text NOT NULL,
    created     timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
