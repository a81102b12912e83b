-- The environment's single account per platform (X_BEARER_TOKEN with
-- X_REFRESH_TOKEN, TIKTOK_ACCESS_TOKEN with TIKTOK_REFRESH_TOKEN, ...) is
-- shared by every worker process. Where refresh tokens rotate (TikTok, X), a
-- refresh spends the token it used, so the processes must go on from one
-- grant: the latest is kept here, encrypted like social_accounts' tokens.
-- `seed` is a keyed digest of the environment's tokens the chain started
-- from: when an operator sets new ones, the old chain is ignored.
-- A refresh holds pg_advisory_xact_lock(social_environment_grants' lock
-- class, hashtext(platform)), so one process calls the platform and the
-- others read what it stored. The caller role gets nothing here.

CREATE TABLE social_environment_grants (
    platform text PRIMARY KEY REFERENCES social_platforms (platform),
    seed text NOT NULL,
    access_token bytea NOT NULL,
    refresh_token bytea,
    token_expires_at timestamptz,
    token_version integer NOT NULL CHECK (token_version > 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE social_environment_grants IS
    'Latest refreshed grant of each platform''s environment account, encrypted, shared by all worker processes';
