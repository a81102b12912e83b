-- Social Queue schema: posts, their attempts and events, platforms, accounts,
-- and the operator's settings. Functions and triggers follow in later files.

CREATE TYPE social_status AS ENUM (
    'queued',     -- waiting for next_attempt_at (its scheduled time at first)
    'posting',    -- claimed by a worker that holds a lease on it
    'posted',     -- the platform confirmed it; terminal
    'retrying',   -- an attempt failed and will be tried again at next_attempt_at
    'failed',     -- terminal until an operator retries it
    'paused',     -- held by an operator; resume puts it back in the queue
    'cancelled'   -- will never be published; terminal
);

CREATE TYPE social_error_kind AS ENUM (
    'transient',        -- certainly not published; retried with backoff
    'rate_limited',     -- the platform said not now; retried, budget not spent
    'auth',             -- credentials revoked, expired or missing a scope
    'invalid',          -- the platform will never accept this content
    'config',           -- our side is misconfigured
    'unknown_outcome'   -- may have been published; never retried blindly
);

-- One row; operators tune retries here without a deploy.
CREATE TABLE social_queue_settings (
    id boolean PRIMARY KEY DEFAULT true,
    backoff_base interval NOT NULL DEFAULT '15 seconds',
    backoff_cap interval NOT NULL DEFAULT '30 minutes',
    backoff_jitter double precision NOT NULL DEFAULT 0.5,
    max_attempts integer NOT NULL DEFAULT 8,
    lease_duration interval NOT NULL DEFAULT '5 minutes',
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT social_queue_settings_single_row CHECK (id),
    CONSTRAINT social_queue_settings_backoff_positive
        CHECK (backoff_base > '0'::interval AND backoff_cap >= backoff_base),
    CONSTRAINT social_queue_settings_jitter_fraction
        CHECK (backoff_jitter >= 0 AND backoff_jitter <= 1),
    CONSTRAINT social_queue_settings_attempts_positive CHECK (max_attempts >= 1),
    CONSTRAINT social_queue_settings_lease_positive
        CHECK (lease_duration >= '10 seconds'::interval)
);
INSERT INTO social_queue_settings DEFAULT VALUES;

CREATE TABLE social_platforms (
    platform text PRIMARY KEY,
    display_name text NOT NULL,
    paused boolean NOT NULL DEFAULT false,
    paused_reason text,
    paused_at timestamptz,
    paused_by text,
    -- Limits the database checks at enqueue. They are lower bounds of the
    -- platform's own rules (the adapter checks the exact ones): text is
    -- counted in characters, with each URL counted as url_length when set.
    max_text_length integer,
    url_length integer,
    media_required boolean NOT NULL DEFAULT false,
    max_media_count integer,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT social_platforms_name_format CHECK (platform ~ '^[a-z][a-z0-9_]{0,31}$'),
    CONSTRAINT social_platforms_limits_positive CHECK (
        coalesce(max_text_length, 1) > 0
        AND coalesce(url_length, 1) > 0
        AND coalesce(max_media_count, 1) > 0
    ),
    CONSTRAINT social_platforms_paused_consistent
        CHECK (paused = (paused_at IS NOT NULL))
);

INSERT INTO social_platforms
    (platform, display_name, max_text_length, url_length, media_required, max_media_count)
VALUES
    ('x', 'X', 280, 23, false, 4),
    ('instagram', 'Instagram', 2200, NULL, true, 10),
    ('linkedin', 'LinkedIn', 3000, NULL, false, 20),
    ('facebook', 'Facebook', 63206, NULL, false, NULL),
    ('tiktok', 'TikTok', 2200, NULL, true, 35),
    ('youtube', 'YouTube', 5000, NULL, true, 1);

CREATE TABLE social_queue (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    profile_id text NOT NULL,
    platform text NOT NULL REFERENCES social_platforms (platform),
    content jsonb NOT NULL,
    scheduled_at timestamptz NOT NULL,
    status social_status NOT NULL DEFAULT 'queued',
    -- Every claim counts in attempts, one row each in social_queue_attempts;
    -- budget_used counts those that spend the retry budget since the last
    -- operator retry (a rate limit does not).
    attempts integer NOT NULL DEFAULT 0,
    budget_used integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    last_error text,
    error_kind social_error_kind,
    remote_id text,
    remote_url text,
    posted_at timestamptz,
    -- Intermediate handles an adapter saved (container id, upload session):
    -- what reconciliation looks at after an unknown outcome.
    handles jsonb NOT NULL DEFAULT '{}',
    idempotency_key text,
    source text NOT NULL DEFAULT 'sql',
    source_ref text,
    claimed_by text,
    lease_expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT social_queue_idempotency_key_unique UNIQUE (idempotency_key),
    CONSTRAINT social_queue_profile_id_format
        CHECK (profile_id <> '' AND length(profile_id) <= 200),
    CONSTRAINT social_queue_content_is_object CHECK (jsonb_typeof(content) = 'object'),
    CONSTRAINT social_queue_handles_is_object CHECK (jsonb_typeof(handles) = 'object'),
    CONSTRAINT social_queue_attempts_counted
        CHECK (attempts >= 0 AND budget_used >= 0 AND budget_used <= attempts),
    CONSTRAINT social_queue_waiting_has_next_attempt
        CHECK ((status IN ('queued', 'retrying')) = (next_attempt_at IS NOT NULL)),
    CONSTRAINT social_queue_posting_has_lease
        CHECK ((status = 'posting') = (claimed_by IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CONSTRAINT social_queue_claim_only_when_posting
        CHECK (status = 'posting' OR (claimed_by IS NULL AND lease_expires_at IS NULL)),
    CONSTRAINT social_queue_posted_has_remote
        CHECK ((status = 'posted') = (posted_at IS NOT NULL)
               AND (status <> 'posted' OR remote_id IS NOT NULL)),
    CONSTRAINT social_queue_failure_has_error
        CHECK (status NOT IN ('failed', 'retrying') OR error_kind IS NOT NULL),
    CONSTRAINT social_queue_posting_has_attempt
        CHECK (status NOT IN ('posting', 'posted', 'retrying') OR attempts > 0)
);

-- What is due: the claim path and the sweeper read only waiting rows.
CREATE INDEX social_queue_due_idx ON social_queue (next_attempt_at)
    WHERE status IN ('queued', 'retrying');
-- Leases to reap.
CREATE INDEX social_queue_lease_idx ON social_queue (lease_expires_at)
    WHERE status = 'posting';
-- Lists, newest first, filtered by status, platform or profile (keyset on
-- scheduled_at, id).
CREATE INDEX social_queue_list_idx ON social_queue (scheduled_at DESC, id DESC);
CREATE INDEX social_queue_status_list_idx
    ON social_queue (status, scheduled_at DESC, id DESC);
CREATE INDEX social_queue_platform_list_idx
    ON social_queue (platform, scheduled_at DESC, id DESC);
CREATE INDEX social_queue_profile_list_idx
    ON social_queue (profile_id, scheduled_at DESC, id DESC);
-- iCadence's schedule id, for schedule.deleted and schedule.updated.
CREATE INDEX social_queue_source_ref_idx ON social_queue (source, source_ref)
    WHERE source_ref IS NOT NULL;

CREATE TABLE social_queue_attempts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    post_id uuid NOT NULL REFERENCES social_queue (id) ON DELETE CASCADE,
    number integer NOT NULL,
    worker text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome text,
    error_kind social_error_kind,
    error_message text,
    http_status integer,
    remote_id text,
    CONSTRAINT social_queue_attempts_number_unique UNIQUE (post_id, number),
    CONSTRAINT social_queue_attempts_outcome_known CHECK (
        outcome IN ('published', 'failed', 'lease_expired')
    ),
    CONSTRAINT social_queue_attempts_finished_with_outcome
        CHECK ((finished_at IS NULL) = (outcome IS NULL))
);

CREATE TABLE social_queue_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    post_id uuid NOT NULL REFERENCES social_queue (id) ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    action text NOT NULL,
    actor text NOT NULL,
    from_status social_status,
    to_status social_status NOT NULL,
    detail jsonb
);
CREATE INDEX social_queue_events_post_idx ON social_queue_events (post_id, id);

-- Credentials and per-account state for one profile on one platform. Tokens
-- are encrypted by the application before they get here (Fernet, keyed by
-- SOCIAL_QUEUE_SECRET_KEY); a row without tokens still carries the account's
-- pause and rate-limit state, and its credentials come from the environment.
CREATE TABLE social_accounts (
    profile_id text NOT NULL,
    platform text NOT NULL REFERENCES social_platforms (platform),
    account_id text,
    access_token bytea,
    refresh_token bytea,
    token_expires_at timestamptz,
    refresh_expires_at timestamptz,
    token_version integer NOT NULL DEFAULT 0,
    scopes text,
    rate_limited_until timestamptz,
    paused boolean NOT NULL DEFAULT false,
    paused_reason text,
    paused_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (profile_id, platform),
    CONSTRAINT social_accounts_paused_consistent CHECK (paused = (paused_at IS NOT NULL))
);
