-- A streamed generation the client stopped is 'cancelled': it keeps the partial text and the
-- tokens used, and its credit stays charged when output was produced (README, Streaming).
ALTER TABLE generations DROP CONSTRAINT generations_status_check;
ALTER TABLE generations ADD CONSTRAINT generations_status_check
    CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled'));
