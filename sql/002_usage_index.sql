-- GET /api/usage sums one user's generations of one month. With status and tokens in the
-- index, the scan is index-only (no heap visit per row) once the visibility map is set.
CREATE INDEX generations_user_created_usage_idx ON generations (user_id, created_at)
    INCLUDE (status, input_tokens, output_tokens);
