-- Hardening after review: the caller role cannot shadow our tables, a stale
-- or NULL attempt cannot report, dates stay in a range every client can
-- read, repeated rate limits back off, operator changes of platforms and
-- accounts leave events, an unknown outcome is retried only once someone
-- says it was checked, and the queue counts stay cheap at millions of rows.

-- settings -------------------------------------------------------------------

ALTER TABLE social_queue_settings
    -- A platform's Retry-After beyond this is treated as this: a header in
    -- the wrong unit must not park a post for years.
    ADD COLUMN retry_after_cap interval NOT NULL DEFAULT '2 days',
    ADD CONSTRAINT social_queue_settings_retry_after_cap_positive
        CHECK (retry_after_cap > '0'::interval),
    -- Jitter of 1 could make a wait zero, which is a busy retry loop.
    ADD CONSTRAINT social_queue_settings_jitter_below_one CHECK (backoff_jitter < 1);

-- The backoff and lease come from the one settings row; without it every
-- claim and failure would break, so it cannot be deleted.
CREATE FUNCTION social_queue__keep_settings()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'social_queue_settings keeps exactly one row; UPDATE it instead'
        USING ERRCODE = 'SQ422';
END;
$$;

COMMENT ON FUNCTION social_queue__keep_settings() IS
'Internal trigger: refuses DELETE and TRUNCATE of social_queue_settings, whose '
'one row the backoff and the lease are read from.';

CREATE TRIGGER social_queue_settings_keep_row
    BEFORE DELETE ON social_queue_settings
    FOR EACH ROW EXECUTE FUNCTION social_queue__keep_settings();
CREATE TRIGGER social_queue_settings_keep_rows
    BEFORE TRUNCATE ON social_queue_settings
    FOR EACH STATEMENT EXECUTE FUNCTION social_queue__keep_settings();

-- posts -------------------------------------------------------------------------

-- Dates every client can read back: PostgreSQL stores 'infinity' and years
-- past 9999, which Python (and most drivers) cannot represent, and one such
-- row would break every list that reaches it.
ALTER TABLE social_queue
    ADD COLUMN idempotency_fingerprint text,
    ADD CONSTRAINT social_queue_scheduled_at_in_range
        CHECK (scheduled_at >= '2000-01-01 00:00+00' AND scheduled_at < '9000-01-01 00:00+00'),
    ADD CONSTRAINT social_queue_next_attempt_at_in_range
        CHECK (next_attempt_at >= '2000-01-01 00:00+00' AND next_attempt_at < '9000-01-01 00:00+00');

COMMENT ON COLUMN social_queue.idempotency_fingerprint IS
'md5 of the profile, platform, content and time first enqueued under '
'idempotency_key: a reuse of the key for another post is refused.';

-- The fingerprint of what an enqueue asked for.
CREATE FUNCTION social_queue__fingerprint(p_profile_id text, p_platform text,
                                          p_content jsonb, p_scheduled_at timestamptz)
    RETURNS text
    LANGUAGE sql
    IMMUTABLE
AS $$
    SELECT md5(jsonb_build_array(p_profile_id, p_platform, p_content,
                                 extract(epoch FROM p_scheduled_at))::text);
$$;

COMMENT ON FUNCTION social_queue__fingerprint(text, text, jsonb, timestamptz) IS
'Internal. md5 of an enqueue''s profile, platform, content and time, kept '
'with the idempotency key.';

CREATE OR REPLACE FUNCTION social_queue__before_write()
    RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
BEGIN
    IF NEW.scheduled_at IS NULL THEN
        PERFORM social_queue__invalid('scheduled_at is required');
    END IF;
    IF (TG_OP = 'INSERT' OR NEW.scheduled_at IS DISTINCT FROM OLD.scheduled_at)
       AND NOT (NEW.scheduled_at >= '2000-01-01 00:00+00'
                AND NEW.scheduled_at < '9000-01-01 00:00+00') THEN
        PERFORM social_queue__invalid(format(
            'scheduled_at must be between 2000-01-01 and 9000-01-01 UTC, not %s',
            NEW.scheduled_at));
    END IF;
    IF NEW.profile_id IS NULL OR btrim(NEW.profile_id) = '' THEN
        PERFORM social_queue__invalid('profile_id is required');
    END IF;
    IF length(NEW.profile_id) > 200 THEN
        PERFORM social_queue__invalid(format(
            'profile_id is %s characters; at most 200', length(NEW.profile_id)));
    END IF;
    IF TG_OP = 'INSERT'
       OR NEW.content IS DISTINCT FROM OLD.content
       OR NEW.platform IS DISTINCT FROM OLD.platform THEN
        PERFORM social_queue_check_content(NEW.platform, NEW.content);
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.content IS DISTINCT FROM OLD.content
       AND NEW.handles = OLD.handles THEN
        -- Handles (a container, an upload session) carry the old content;
        -- reusing one would publish what the post no longer says.
        NEW.handles := '{}';
    END IF;

    IF NEW.status IN ('queued', 'retrying') THEN
        IF NEW.next_attempt_at IS NULL THEN
            NEW.next_attempt_at := CASE WHEN TG_OP = 'INSERT' THEN NEW.scheduled_at
                                        ELSE greatest(NEW.scheduled_at, now()) END;
        ELSIF TG_OP = 'UPDATE' AND NEW.status = 'queued' AND OLD.status = 'queued'
              AND NEW.scheduled_at IS DISTINCT FROM OLD.scheduled_at
              AND NEW.next_attempt_at IS NOT DISTINCT FROM OLD.next_attempt_at THEN
            -- Another system moved the time with a plain UPDATE.
            NEW.next_attempt_at := NEW.scheduled_at;
        END IF;
    ELSE
        NEW.next_attempt_at := NULL;
    END IF;
    IF NEW.status <> 'posting' THEN
        NEW.claimed_by := NULL;
        NEW.lease_expires_at := NULL;
    END IF;

    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$;

-- Now also records a change of time, content or error kind that keeps the
-- status (a reschedule, another system's plain UPDATE, or a lost attempt
-- found not to have published), so every edit has an actor.
CREATE OR REPLACE FUNCTION social_queue__after_write()
    RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
DECLARE
    v_status_changed boolean := TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status;
    v_edited boolean := TG_OP = 'UPDATE'
        AND (NEW.scheduled_at IS DISTINCT FROM OLD.scheduled_at
             OR NEW.content IS DISTINCT FROM OLD.content
             OR NEW.error_kind IS DISTINCT FROM OLD.error_kind);
    v_detail jsonb;
BEGIN
    IF v_status_changed OR v_edited THEN
        IF NEW.status IN ('retrying', 'failed')
           AND (v_status_changed OR NEW.error_kind IS DISTINCT FROM OLD.error_kind) THEN
            v_detail := jsonb_build_object('error_kind', NEW.error_kind,
                                           'error', NEW.last_error,
                                           'attempt', NEW.attempts);
        END IF;
        IF v_edited THEN
            v_detail := coalesce(v_detail, '{}') || jsonb_strip_nulls(jsonb_build_object(
                'scheduled_at', CASE WHEN NEW.scheduled_at IS DISTINCT FROM OLD.scheduled_at
                                     THEN jsonb_build_object('from', OLD.scheduled_at,
                                                             'to', NEW.scheduled_at) END,
                'content_changed', CASE WHEN NEW.content IS DISTINCT FROM OLD.content
                                        THEN true END));
        END IF;
        INSERT INTO social_queue_events (post_id, action, actor, from_status, to_status, detail)
        VALUES (
            NEW.id,
            coalesce(nullif(current_setting('social_queue.action', true), ''),
                     lower(TG_OP)),
            social_queue__actor(),
            CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END,
            NEW.status,
            v_detail
        );
    END IF;

    IF v_status_changed OR v_edited
       OR NEW.next_attempt_at IS DISTINCT FROM OLD.next_attempt_at THEN
        PERFORM pg_notify('social_queue', json_build_object(
            'id', NEW.id, 'status', NEW.status,
            'platform', NEW.platform, 'profile_id', NEW.profile_id)::text);
    END IF;

    IF NEW.status IN ('queued', 'retrying')
       AND (v_status_changed OR NEW.next_attempt_at IS DISTINCT FROM OLD.next_attempt_at) THEN
        PERFORM social_queue__defer_publish(NEW.id, NEW.next_attempt_at);
    END IF;
    RETURN NULL;
END;
$$;

-- enqueue ---------------------------------------------------------------------

CREATE OR REPLACE FUNCTION social_queue_enqueue(
    p_profile_id text,
    p_platform text,
    p_content jsonb,
    p_scheduled_at timestamptz,
    p_idempotency_key text DEFAULT NULL,
    p_source text DEFAULT 'sql',
    p_source_ref text DEFAULT NULL,
    p_actor text DEFAULT NULL
)
    RETURNS uuid
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
DECLARE
    v_id uuid;
    v_fingerprint text;
BEGIN
    IF p_profile_id IS NULL OR btrim(p_profile_id) = '' THEN
        PERFORM social_queue__invalid('profile_id is required');
    END IF;
    IF p_scheduled_at IS NULL THEN
        PERFORM social_queue__invalid('scheduled_at is required');
    END IF;
    IF p_idempotency_key = '' THEN
        PERFORM social_queue__invalid('idempotency_key must not be empty; pass NULL for none');
    END IF;

    IF p_idempotency_key IS NOT NULL THEN
        v_fingerprint := social_queue__fingerprint(p_profile_id, p_platform, p_content,
                                                   p_scheduled_at);
        -- A replay is answered before the content is checked again, so a
        -- limit tightened since does not turn a replay into an error.
        v_id := social_queue__replay(p_idempotency_key, v_fingerprint);
        IF v_id IS NOT NULL THEN
            RETURN v_id;
        END IF;
    END IF;

    -- The content is checked by the table's BEFORE INSERT trigger: once, for
    -- every writer.
    PERFORM social_queue__act('enqueue', p_actor);
    INSERT INTO social_queue (profile_id, platform, content, scheduled_at,
                              idempotency_key, idempotency_fingerprint, source, source_ref)
    VALUES (p_profile_id, p_platform, p_content, p_scheduled_at,
            p_idempotency_key, v_fingerprint, coalesce(p_source, 'sql'), p_source_ref)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id INTO v_id;
    PERFORM social_queue__act(NULL, NULL);

    IF v_id IS NULL THEN
        -- Another transaction enqueued the same key meanwhile and committed.
        v_id := social_queue__replay(p_idempotency_key, v_fingerprint);
    END IF;
    RETURN v_id;
END;
$$;

-- The post an idempotency key already names, or NULL; raises SQ409 when the
-- key was first used for another profile, platform, content or time.
CREATE FUNCTION social_queue__replay(p_idempotency_key text, p_fingerprint text)
    RETURNS uuid
    LANGUAGE plpgsql
AS $$
DECLARE
    v_post social_queue;
BEGIN
    SELECT * INTO v_post FROM social_queue WHERE idempotency_key = p_idempotency_key;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF v_post.idempotency_fingerprint IS DISTINCT FROM p_fingerprint
       AND v_post.idempotency_fingerprint IS NOT NULL THEN
        RAISE EXCEPTION 'cannot enqueue with idempotency key %: post % was enqueued with it '
                        'for another profile, platform, content or time; '
                        'use social_queue_reschedule to change that post',
            p_idempotency_key, v_post.id
            USING ERRCODE = 'SQ409',
                  DETAIL = json_build_object('id', v_post.id, 'status', v_post.status,
                                             'action', 'enqueue')::text;
    END IF;
    RETURN v_post.id;
END;
$$;

COMMENT ON FUNCTION social_queue__replay(text, text) IS
'Internal. The id of the post enqueued under p_idempotency_key, or NULL; '
'raises SQ409 when that post was enqueued with another fingerprint.';

COMMENT ON FUNCTION social_queue_enqueue(text, text, jsonb, timestamptz, text, text, text, text) IS
'Queues a post for publishing at p_scheduled_at and returns its id. Checks the '
'platform and the content against the platform''s limits first (SQ422). With '
'an idempotency key that already exists for the same profile, platform, '
'content and time, returns that post''s id and changes nothing; the same key '
'for anything else raises SQ409.';

-- the worker's side -----------------------------------------------------------

CREATE OR REPLACE FUNCTION social_queue_claim(p_id uuid, p_worker text)
    RETURNS SETOF social_queue
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
DECLARE
    v_post social_queue;
BEGIN
    IF p_worker IS NULL OR p_worker = '' THEN
        PERFORM social_queue__invalid('worker is required to claim a post');
    END IF;
    -- Waits for a transaction changing the post (an operator's action is
    -- short), then sees its outcome: skipping would leave a post that stays
    -- due without a job until the sweeper finds it.
    v_post := social_queue__lock(p_id, 'claim');
    v_post := social_queue__claim_row(v_post, p_worker);
    IF v_post.id IS NOT NULL THEN
        RETURN NEXT v_post;
    END IF;
    PERFORM social_queue__act(NULL, NULL);
END;
$$;

COMMENT ON FUNCTION social_queue_claim(uuid, text) IS
'Claims post p_id for worker p_worker: queued|retrying -> posting, when it is '
'due and neither its platform nor its account is paused or rate limited. '
'Returns the claimed row with attempts = this attempt''s number, or no row. '
'An attempt row is opened. The lease lasts social_queue_settings.lease_duration. '
'Raises SQ404 for an unknown id.';

-- Whether a platform, or one account on it, is held back now (paused, or
-- rate limited). A PL/pgSQL function, which the planner never inlines, so
-- that social_queue_claim_due stays an ordered walk of the due index that
-- stops at its limit. As anti-joins, the planner read every due post and
-- sorted them whenever its statistics said few were due: with millions of
-- posted rows, ANALYZE's sample holds almost no waiting ones, and a claim
-- took 1.5 ms instead of 0.7 with a thousand posts due.
CREATE FUNCTION social_queue__held_back(p_platform text, p_profile_id text)
    RETURNS boolean
    LANGUAGE plpgsql
    STABLE
AS $$
BEGIN
    RETURN EXISTS (SELECT FROM social_platforms p
                    WHERE p.platform = p_platform AND p.paused)
        OR EXISTS (SELECT FROM social_accounts a
                    WHERE a.profile_id = p_profile_id AND a.platform = p_platform
                      AND (a.paused OR a.rate_limited_until > now()));
END;
$$;

COMMENT ON FUNCTION social_queue__held_back(text, text) IS
'Internal. True when platform p_platform is paused, or the account of '
'p_profile_id on it is paused or rate limited now.';

CREATE OR REPLACE FUNCTION social_queue_claim_due(p_worker text, p_limit integer DEFAULT 1,
                                                  p_platforms text[] DEFAULT NULL)
    RETURNS SETOF social_queue
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
DECLARE
    v_post social_queue;
BEGIN
    IF p_worker IS NULL OR p_worker = '' THEN
        PERFORM social_queue__invalid('worker is required to claim a post');
    END IF;
    IF p_limit IS NULL OR p_limit < 0 THEN
        PERFORM social_queue__invalid('the claim limit must be 0 or more');
    END IF;
    -- Held-back accounts are filtered here, not in claim_row: otherwise the
    -- oldest posts of one paused account would fill the limit on every call.
    FOR v_post IN
        SELECT q.* FROM social_queue q
         WHERE q.status IN ('queued', 'retrying') AND q.next_attempt_at <= now()
           AND (p_platforms IS NULL OR q.platform = ANY (p_platforms))
           AND NOT social_queue__held_back(q.platform, q.profile_id)
         ORDER BY q.next_attempt_at
         LIMIT p_limit
           FOR UPDATE OF q SKIP LOCKED
    LOOP
        v_post := social_queue__claim_row(v_post, p_worker);
        IF v_post.id IS NOT NULL THEN
            RETURN NEXT v_post;
        END IF;
    END LOOP;
    PERFORM social_queue__act(NULL, NULL);
END;
$$;

-- A report must name the attempt that holds the claim: NULL is not "any".
CREATE OR REPLACE FUNCTION social_queue__lock_claim(p_id uuid, p_attempt integer, p_action text)
    RETURNS social_queue
    LANGUAGE plpgsql
AS $$
DECLARE
    v_post social_queue;
BEGIN
    IF p_attempt IS NULL THEN
        PERFORM social_queue__invalid(format(
            'cannot %s post %s: the attempt number is required', p_action, p_id));
    END IF;
    v_post := social_queue__lock(p_id, p_action);
    IF v_post.status <> 'posting' THEN
        PERFORM social_queue__illegal(p_id, v_post.status, p_action, 'posting');
    END IF;
    IF v_post.attempts IS DISTINCT FROM p_attempt THEN
        RAISE EXCEPTION 'cannot % post %: attempt % no longer holds the claim (attempt % does)',
            p_action, p_id, p_attempt, v_post.attempts
            USING ERRCODE = 'SQ409',
                  DETAIL = json_build_object('id', p_id, 'status', v_post.status,
                                             'action', p_action)::text;
    END IF;
    RETURN v_post;
END;
$$;

-- How many attempts in a row, ending with p_attempt, were rate limited: the
-- exponent of the wait when the platform gave no reset time.
CREATE FUNCTION social_queue__rate_limit_streak(p_id uuid, p_attempt integer)
    RETURNS integer
    LANGUAGE sql
    STABLE
AS $$
    SELECT 1 + count(*)::integer
      FROM social_queue_attempts a
     WHERE a.post_id = p_id AND a.number < p_attempt AND a.error_kind = 'rate_limited'
       AND a.number > coalesce((SELECT max(b.number) FROM social_queue_attempts b
                                 WHERE b.post_id = p_id AND b.number < p_attempt
                                   AND b.error_kind IS DISTINCT FROM 'rate_limited'), 0);
$$;

COMMENT ON FUNCTION social_queue__rate_limit_streak(uuid, integer) IS
'Internal. 1 + the number of rate-limited attempts of the post directly '
'before attempt p_attempt.';

CREATE OR REPLACE FUNCTION social_queue_fail(p_id uuid, p_attempt integer,
                                             p_error_kind social_error_kind,
                                             p_error text, p_http_status integer DEFAULT NULL,
                                             p_retry_at timestamptz DEFAULT NULL,
                                             p_actor text DEFAULT NULL)
    RETURNS social_queue
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
DECLARE
    v_post social_queue := social_queue__lock_claim(p_id, p_attempt, 'fail');
    v_settings social_queue_settings;
    v_budget integer := v_post.budget_used;
    v_status social_status := 'failed';
    v_retry_at timestamptz;
    v_next timestamptz;
BEGIN
    IF p_error_kind IS NULL THEN
        PERFORM social_queue__invalid('error_kind is required to fail a post');
    END IF;
    SELECT * INTO v_settings FROM social_queue_settings;
    -- A reset time in the past says nothing; one absurdly far ahead is capped.
    IF p_retry_at > now() AND isfinite(p_retry_at) THEN
        v_retry_at := least(p_retry_at, now() + v_settings.retry_after_cap);
    END IF;

    IF p_error_kind = 'rate_limited' THEN
        v_status := 'retrying';
        v_next := coalesce(v_retry_at, social_queue_backoff(
            social_queue__rate_limit_streak(p_id, p_attempt)));
        INSERT INTO social_accounts (profile_id, platform, rate_limited_until)
        VALUES (v_post.profile_id, v_post.platform, v_next)
        ON CONFLICT (profile_id, platform) DO UPDATE
           SET rate_limited_until = greatest(social_accounts.rate_limited_until,
                                             excluded.rate_limited_until),
               updated_at = now();
    ELSIF p_error_kind = 'transient' THEN
        v_budget := v_budget + 1;
        IF v_budget < v_settings.max_attempts THEN
            v_status := 'retrying';
            v_next := social_queue_backoff(v_budget, v_retry_at);
        END IF;
    END IF;

    PERFORM social_queue__act('fail', coalesce(p_actor, v_post.claimed_by));
    UPDATE social_queue
       SET status = v_status, budget_used = v_budget, next_attempt_at = v_next,
           error_kind = p_error_kind,
           last_error = CASE
               WHEN p_error_kind = 'transient' AND v_status = 'failed' THEN
                   format('gave up after %s attempts: %s', v_budget, p_error)
               ELSE p_error END
     WHERE id = p_id
    RETURNING * INTO v_post;
    UPDATE social_queue_attempts
       SET finished_at = clock_timestamp(), outcome = 'failed', error_kind = p_error_kind,
           error_message = p_error, http_status = p_http_status
     WHERE post_id = p_id AND number = p_attempt;
    PERFORM social_queue__act(NULL, NULL);
    RETURN v_post;
END;
$$;

COMMENT ON FUNCTION social_queue_fail(uuid, integer, social_error_kind, text, integer, timestamptz, text) IS
'Records that attempt p_attempt of post p_id failed. posting -> retrying at a '
'backoff time (transient, while budget remains; rate_limited, at p_retry_at or '
'a backoff growing with each rate limit in a row, without spending budget and '
'holding back the account''s other posts) or posting -> failed (budget spent, '
'auth, invalid, config, unknown_outcome). p_retry_at in the past is ignored '
'and one beyond social_queue_settings.retry_after_cap is capped. Raises SQ409 '
'if the post is not posting or another attempt holds it.';

CREATE FUNCTION social_queue_requeue_unpublished(p_id uuid, p_actor text DEFAULT 'reconciler')
    RETURNS social_queue
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
DECLARE
    v_post social_queue := social_queue__lock(p_id, 'requeue');
    v_settings social_queue_settings;
    v_budget integer;
BEGIN
    IF v_post.status <> 'failed' OR v_post.error_kind IS DISTINCT FROM 'unknown_outcome' THEN
        PERFORM social_queue__illegal(p_id, v_post.status, 'requeue',
                                      'failed with an unknown outcome');
    END IF;
    SELECT * INTO v_settings FROM social_queue_settings;
    v_budget := v_post.budget_used + 1;

    PERFORM social_queue__act('requeue', p_actor);
    IF v_budget < v_settings.max_attempts THEN
        UPDATE social_queue
           SET status = 'retrying', budget_used = v_budget, error_kind = 'transient',
               next_attempt_at = greatest(social_queue_backoff(v_budget), scheduled_at),
               last_error = 'the lost attempt did not publish: ' || coalesce(last_error, '')
         WHERE id = p_id
        RETURNING * INTO v_post;
    ELSE
        UPDATE social_queue
           SET budget_used = v_budget, error_kind = 'transient',
               last_error = format('gave up after %s attempts: the lost attempt did not publish',
                                   v_budget)
         WHERE id = p_id
        RETURNING * INTO v_post;
    END IF;
    PERFORM social_queue__act(NULL, NULL);
    RETURN v_post;
END;
$$;

COMMENT ON FUNCTION social_queue_requeue_unpublished(uuid, text) IS
'After reconciliation proved that a lost attempt did not publish: failed '
'(unknown_outcome) -> retrying at a backoff time, spending one attempt of the '
'budget, or failed (transient, gave up) when the budget is spent. Unlike '
'social_queue_retry it does not start a fresh budget, so a post that kills '
'its worker every time stops. Raises SQ404 or SQ409.';

-- operator actions ------------------------------------------------------------

DROP FUNCTION social_queue_retry(uuid, text);
DROP FUNCTION social_queue_retry(uuid[], text);
DROP FUNCTION social_queue__operate_many(uuid[], text, text);
DROP FUNCTION social_queue__operate(social_queue, text, text);

CREATE FUNCTION social_queue__operate(p_post social_queue, p_action text, p_actor text,
                                      p_outcome_checked boolean DEFAULT false)
    RETURNS social_queue
    LANGUAGE plpgsql
AS $$
DECLARE
    v_post social_queue;
BEGIN
    PERFORM social_queue__act(p_action, p_actor);
    CASE p_action
    WHEN 'pause' THEN
        IF p_post.status NOT IN ('queued', 'retrying') THEN
            PERFORM social_queue__illegal(p_post.id, p_post.status, p_action, 'queued or retrying');
        END IF;
        UPDATE social_queue SET status = 'paused' WHERE id = p_post.id RETURNING * INTO v_post;
    WHEN 'resume' THEN
        IF p_post.status <> 'paused' THEN
            PERFORM social_queue__illegal(p_post.id, p_post.status, p_action, 'paused');
        END IF;
        UPDATE social_queue
           SET status = 'queued', next_attempt_at = greatest(scheduled_at, now())
         WHERE id = p_post.id RETURNING * INTO v_post;
    WHEN 'retry' THEN
        IF p_post.status NOT IN ('failed', 'retrying', 'paused') THEN
            PERFORM social_queue__illegal(p_post.id, p_post.status, p_action,
                                          'failed, retrying or paused');
        END IF;
        IF p_post.status = 'failed' AND p_post.error_kind = 'unknown_outcome'
           AND NOT coalesce(p_outcome_checked, false) THEN
            RAISE EXCEPTION 'cannot retry post %: its last attempt may have published; '
                            'check the account on %, then retry with p_outcome_checked '
                            '=> true, or mark it posted',
                p_post.id, p_post.platform
                USING ERRCODE = 'SQ409',
                      DETAIL = json_build_object('id', p_post.id, 'status', p_post.status,
                                                 'action', p_action,
                                                 'reason', 'outcome_unchecked')::text;
        END IF;
        -- Never before its time: retrying a post due next week keeps it there.
        UPDATE social_queue
           SET status = 'queued', next_attempt_at = greatest(scheduled_at, now()),
               budget_used = 0
         WHERE id = p_post.id RETURNING * INTO v_post;
    WHEN 'cancel' THEN
        IF p_post.status NOT IN ('queued', 'retrying', 'paused', 'failed') THEN
            PERFORM social_queue__illegal(p_post.id, p_post.status, p_action,
                                          'queued, retrying, paused or failed');
        END IF;
        UPDATE social_queue SET status = 'cancelled' WHERE id = p_post.id RETURNING * INTO v_post;
    ELSE
        PERFORM social_queue__invalid(format('unknown action %L', p_action));
    END CASE;
    PERFORM social_queue__act(NULL, NULL);
    RETURN v_post;
END;
$$;

CREATE FUNCTION social_queue__operate_many(p_ids uuid[], p_action text, p_actor text,
                                           p_outcome_checked boolean DEFAULT false)
    RETURNS TABLE (id uuid, status social_status, changed boolean, reason text)
    LANGUAGE plpgsql
AS $$
DECLARE
    v_id uuid;
    v_post social_queue;
BEGIN
    IF p_ids IS NULL THEN
        PERFORM social_queue__invalid('a list of post ids is required');
    END IF;
    FOR v_id IN SELECT DISTINCT u FROM unnest(p_ids) AS u WHERE u IS NOT NULL ORDER BY u LOOP
        SELECT * INTO v_post FROM social_queue q WHERE q.id = v_id FOR UPDATE;
        IF NOT FOUND THEN
            RETURN QUERY SELECT v_id, NULL::social_status, false, 'no such post';
            CONTINUE;
        END IF;
        BEGIN
            v_post := social_queue__operate(v_post, p_action, p_actor, p_outcome_checked);
            RETURN QUERY SELECT v_id, v_post.status, true, NULL::text;
        EXCEPTION WHEN SQLSTATE 'SQ409' THEN
            RETURN QUERY SELECT v_id, v_post.status, false, SQLERRM;
        END;
    END LOOP;
END;
$$;

COMMENT ON FUNCTION social_queue__operate(social_queue, text, text, boolean) IS
'Internal. Pause, resume, retry or cancel one locked post; raises SQ409 for a '
'status the action does not allow, and for a retry of an unknown outcome that '
'p_outcome_checked does not vouch for.';
COMMENT ON FUNCTION social_queue__operate_many(uuid[], text, text, boolean) IS
'Internal. social_queue__operate for many posts: one row per distinct id with '
'its status, whether it changed, and why not.';

CREATE FUNCTION social_queue_retry(p_id uuid, p_actor text DEFAULT NULL,
                                   p_outcome_checked boolean DEFAULT false)
    RETURNS social_queue
    LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT
AS $$
    SELECT social_queue__operate(social_queue__lock(p_id, 'retry'), 'retry', p_actor,
                                 p_outcome_checked)
$$;

CREATE FUNCTION social_queue_retry(p_ids uuid[], p_actor text DEFAULT NULL,
                                   p_outcome_checked boolean DEFAULT false)
    RETURNS TABLE (id uuid, status social_status, changed boolean, reason text)
    LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT
AS $$ SELECT * FROM social_queue__operate_many(p_ids, 'retry', p_actor, p_outcome_checked) $$;

COMMENT ON FUNCTION social_queue_retry(uuid, text, boolean) IS
'Tries a post again with a fresh retry budget: failed|retrying|paused -> '
'queued, due now (or at its scheduled time if that is later). A failed post '
'whose last attempt may have published (unknown_outcome) is retried only with '
'p_outcome_checked => true: someone checked the platform. Returns the row; '
'raises SQ404 or SQ409.';
COMMENT ON FUNCTION social_queue_retry(uuid[], text, boolean) IS
'social_queue_retry for many posts: one row per distinct id with its status, '
'whether it changed, and why not.';

CREATE OR REPLACE FUNCTION social_queue_reschedule(p_id uuid,
                                                   p_scheduled_at timestamptz DEFAULT NULL,
                                                   p_content jsonb DEFAULT NULL,
                                                   p_actor text DEFAULT NULL)
    RETURNS social_queue
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
DECLARE
    v_post social_queue := social_queue__lock(p_id, 'reschedule');
BEGIN
    IF v_post.status NOT IN ('queued', 'retrying', 'paused', 'failed') THEN
        PERFORM social_queue__illegal(p_id, v_post.status, 'reschedule',
                                      'queued, retrying, paused or failed');
    END IF;
    IF p_scheduled_at IS NULL AND p_content IS NULL THEN
        PERFORM social_queue__invalid('reschedule needs a new scheduled_at, new content or both');
    END IF;
    IF v_post.status = 'failed' AND v_post.error_kind = 'unknown_outcome' THEN
        -- The post may be live: a new time or text would hide what to look
        -- for on the platform, and a new chance could publish it twice.
        RAISE EXCEPTION 'cannot reschedule post %: its last attempt may have published '
                        'it; check the account on % and retry or mark it posted first',
            p_id, v_post.platform
            USING ERRCODE = 'SQ409',
                  DETAIL = json_build_object('id', p_id, 'status', v_post.status,
                                             'action', 'reschedule',
                                             'reason', 'outcome_unchecked')::text;
    END IF;

    PERFORM social_queue__act('reschedule', p_actor);
    UPDATE social_queue
       SET scheduled_at = coalesce(p_scheduled_at, scheduled_at),
           content = coalesce(p_content, content),
           -- A new time starts the wait over; new content alone keeps it. A
           -- failed post gets a new chance with a fresh budget: the change is
           -- what it needed (new text for invalid content, a later time).
           status = CASE
               WHEN status = 'failed' THEN 'queued'
               WHEN p_scheduled_at IS NOT NULL AND status = 'retrying' THEN 'queued'
               ELSE status END,
           budget_used = CASE WHEN status = 'failed' THEN 0 ELSE budget_used END,
           next_attempt_at = CASE
               WHEN status = 'failed'
                   THEN coalesce(p_scheduled_at, greatest(scheduled_at, now()))
               WHEN status IN ('queued', 'retrying') AND p_scheduled_at IS NOT NULL
                   THEN p_scheduled_at
               ELSE next_attempt_at END
     WHERE id = p_id
    RETURNING * INTO v_post;
    PERFORM social_queue__act(NULL, NULL);
    RETURN v_post;
END;
$$;

COMMENT ON FUNCTION social_queue_reschedule(uuid, timestamptz, jsonb, text) IS
'Changes the time and/or content of a post not yet published (queued, '
'retrying, paused or failed); a queued or retrying post becomes queued at the '
'new time, and a failed one queued again with a fresh budget. New content is '
'checked as at enqueue (SQ422) and drops the post''s intermediate handles. A '
'post failed with an unknown outcome is refused (SQ409). Records an event. '
'Raises SQ404 or SQ409.';

-- iCadence's view, scoped to its source ----------------------------------------

DROP FUNCTION social_queue_cancel_scheduled(text, timestamptz, text, text);
DROP FUNCTION social_queue_reschedule_scheduled(text, timestamptz, text, timestamptz, jsonb, text);

-- The posts one schedule became: those of p_source with p_source_ref, and
-- those of the profile at that time, as the original matched them, except
-- posts that name another schedule: those belong to it, not to this one.
-- Each branch reads its own index.
CREATE FUNCTION social_queue__scheduled_posts(p_source text, p_source_ref text,
                                              p_profile_id text, p_scheduled_at timestamptz)
    RETURNS SETOF uuid
    LANGUAGE sql
    STABLE
AS $$
    SELECT q.id FROM social_queue q
     WHERE p_source_ref IS NOT NULL AND q.source = p_source AND q.source_ref = p_source_ref
    UNION
    SELECT q.id FROM social_queue q
     WHERE q.profile_id = p_profile_id AND q.scheduled_at = p_scheduled_at
       AND (p_source_ref IS NULL OR q.source_ref IS NULL)
    ORDER BY 1;
$$;

COMMENT ON FUNCTION social_queue__scheduled_posts(text, text, text, timestamptz) IS
'Internal. The ids of the posts of p_source with source_ref p_source_ref, and '
'of p_profile_id scheduled at p_scheduled_at (with a ref given, only those '
'that name no schedule of their own).';

CREATE FUNCTION social_queue_cancel_scheduled(p_profile_id text, p_scheduled_at timestamptz,
                                              p_source_ref text DEFAULT NULL,
                                              p_actor text DEFAULT NULL,
                                              p_source text DEFAULT 'icadence')
    RETURNS TABLE (id uuid, status social_status, changed boolean, reason text)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
BEGIN
    IF p_source_ref IS NULL AND (p_profile_id IS NULL OR p_scheduled_at IS NULL) THEN
        PERFORM social_queue__invalid(
            'cancel_scheduled needs profile_id and scheduled_at, or a source_ref');
    END IF;
    RETURN QUERY
    SELECT * FROM social_queue__operate_many(
        ARRAY(SELECT social_queue__scheduled_posts(p_source, p_source_ref,
                                                   p_profile_id, p_scheduled_at)),
        'cancel', p_actor);
END;
$$;

COMMENT ON FUNCTION social_queue_cancel_scheduled(text, timestamptz, text, text, text) IS
'Cancels the posts of one schedule (iCadence''s schedule.deleted): those of '
'p_source (default icadence) whose source_ref is p_source_ref, and those of '
'p_profile_id scheduled at p_scheduled_at, except, when a ref is given, posts '
'that name another schedule. Posts already posted or being published are left '
'alone and reported with the reason.';

CREATE FUNCTION social_queue_reschedule_scheduled(p_profile_id text,
                                                  p_scheduled_at timestamptz,
                                                  p_source_ref text,
                                                  p_new_scheduled_at timestamptz,
                                                  p_new_content jsonb DEFAULT NULL,
                                                  p_actor text DEFAULT NULL,
                                                  p_source text DEFAULT 'icadence')
    RETURNS TABLE (id uuid, status social_status, changed boolean, reason text)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
DECLARE
    v_id uuid;
    v_post social_queue;
BEGIN
    IF p_source_ref IS NULL AND (p_profile_id IS NULL OR p_scheduled_at IS NULL) THEN
        PERFORM social_queue__invalid(
            'reschedule_scheduled needs profile_id and scheduled_at, or a source_ref');
    END IF;
    IF p_new_scheduled_at IS NULL AND p_new_content IS NULL THEN
        PERFORM social_queue__invalid(
            'reschedule needs a new scheduled_at, new content or both');
    END IF;

    FOR v_id IN
        SELECT social_queue__scheduled_posts(p_source, p_source_ref, p_profile_id,
                                             p_scheduled_at)
    LOOP
        BEGIN
            v_post := social_queue_reschedule(v_id, p_new_scheduled_at, p_new_content,
                                              p_actor);
            RETURN QUERY SELECT v_id, v_post.status, true, NULL::text;
        EXCEPTION WHEN SQLSTATE 'SQ409' THEN
            RETURN QUERY SELECT v_id, q.status, false, SQLERRM
                           FROM social_queue q WHERE q.id = v_id;
        END;
    END LOOP;
END;
$$;

COMMENT ON FUNCTION social_queue_reschedule_scheduled(text, timestamptz, text, timestamptz, jsonb, text, text) IS
'Applies social_queue_reschedule to the posts of one schedule (iCadence''s '
'schedule.updated), found as social_queue_cancel_scheduled finds them. One '
'row per post with its status, whether it changed and why not; posts already '
'published or being published are left alone. New '
'content is checked as at enqueue (SQ422, nothing changes).';

-- platforms and accounts: who paused what, kept ----------------------------------

-- One row per pause or resume of a platform or an account, with the actor:
-- the rows themselves only say whether they are paused now.
CREATE TABLE social_control_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    action text NOT NULL,
    actor text NOT NULL,
    platform text NOT NULL REFERENCES social_platforms (platform),
    profile_id text,
    reason text,
    CONSTRAINT social_control_events_action_known
        CHECK (action IN ('pause', 'resume'))
);
CREATE INDEX social_control_events_platform_idx
    ON social_control_events (platform, profile_id, id);

CREATE FUNCTION social_queue__control(p_action text, p_actor text, p_platform text,
                                      p_profile_id text, p_reason text)
    RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO social_control_events (action, actor, platform, profile_id, reason)
    VALUES (p_action, coalesce(p_actor, social_queue__actor()), p_platform, p_profile_id,
            p_reason);
    PERFORM pg_notify('social_queue', json_build_object(
        'platform', p_platform, 'profile_id', p_profile_id,
        'paused', p_action = 'pause')::text);
END;
$$;

COMMENT ON FUNCTION social_queue__control(text, text, text, text, text) IS
'Internal. Records a pause or resume of a platform (or of one profile on it) '
'in social_control_events and notifies channel social_queue.';

CREATE OR REPLACE FUNCTION social_platform_pause(p_platform text, p_reason text DEFAULT NULL,
                                                 p_actor text DEFAULT NULL)
    RETURNS social_platforms
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
DECLARE
    v_platform social_platforms;
BEGIN
    UPDATE social_platforms
       SET paused = true, paused_reason = p_reason,
           paused_at = coalesce(paused_at, now()),
           paused_by = coalesce(p_actor, social_queue__actor()), updated_at = now()
     WHERE platform = p_platform
    RETURNING * INTO v_platform;
    IF NOT FOUND THEN
        PERFORM social_queue__require_platform(p_platform);
    END IF;
    PERFORM social_queue__control('pause', p_actor, p_platform, NULL, p_reason);
    RETURN v_platform;
END;
$$;

CREATE OR REPLACE FUNCTION social_platform_resume(p_platform text, p_actor text DEFAULT NULL)
    RETURNS social_platforms
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
DECLARE
    v_platform social_platforms;
BEGIN
    UPDATE social_platforms
       SET paused = false, paused_reason = NULL, paused_at = NULL, paused_by = NULL,
           updated_at = now()
     WHERE platform = p_platform
    RETURNING * INTO v_platform;
    IF NOT FOUND THEN
        PERFORM social_queue__require_platform(p_platform);
    END IF;
    PERFORM social_queue__wake(p_platform, NULL, p_actor);
    PERFORM social_queue__control('resume', p_actor, p_platform, NULL, NULL);
    RETURN v_platform;
END;
$$;

COMMENT ON FUNCTION social_platform_pause(text, text, text) IS
'Stops publishing to a whole platform: workers claim none of its posts until '
'social_platform_resume. Posts keep their status. Records who paused it in '
'social_control_events. Returns the platform row.';
COMMENT ON FUNCTION social_platform_resume(text, text) IS
'Publishes to a platform again; its overdue posts become due now. Records who '
'resumed it in social_control_events. Returns the platform row.';

DROP FUNCTION social_profile_pause(text, text, text);

-- Raises SQ422 unless p_profile_id names a profile.
CREATE FUNCTION social_queue__require_profile(p_profile_id text)
    RETURNS void
    LANGUAGE plpgsql
    IMMUTABLE
AS $$
BEGIN
    IF p_profile_id IS NULL OR btrim(p_profile_id) = '' THEN
        PERFORM social_queue__invalid('profile_id is required');
    END IF;
    IF length(p_profile_id) > 200 THEN
        PERFORM social_queue__invalid(format(
            'profile_id is %s characters; at most 200', length(p_profile_id)));
    END IF;
END;
$$;

COMMENT ON FUNCTION social_queue__require_profile(text) IS
'Internal. Raises SQ422 unless p_profile_id is 1 to 200 characters.';

CREATE FUNCTION social_profile_pause(p_profile_id text, p_platform text,
                                     p_reason text DEFAULT NULL, p_actor text DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM social_queue__require_profile(p_profile_id);
    PERFORM social_queue__require_platform(p_platform);
    INSERT INTO social_accounts (profile_id, platform, paused, paused_reason, paused_at)
    VALUES (p_profile_id, p_platform, true, p_reason, now())
    ON CONFLICT (profile_id, platform) DO UPDATE
       SET paused = true, paused_reason = excluded.paused_reason,
           paused_at = coalesce(social_accounts.paused_at, now()), updated_at = now();
    PERFORM social_queue__control('pause', p_actor, p_platform, p_profile_id, p_reason);
END;
$$;

COMMENT ON FUNCTION social_profile_pause(text, text, text, text) IS
'Stops publishing for one profile on one platform (its account) until '
'social_profile_resume; its posts keep their status. Records who paused it in '
'social_control_events.';

CREATE OR REPLACE FUNCTION social_profile_resume(p_profile_id text, p_platform text,
                                                 p_actor text DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM social_queue__require_profile(p_profile_id);
    PERFORM social_queue__require_platform(p_platform);
    UPDATE social_accounts
       SET paused = false, paused_reason = NULL, paused_at = NULL, updated_at = now()
     WHERE profile_id = p_profile_id AND platform = p_platform AND paused;
    IF FOUND THEN
        PERFORM social_queue__wake(p_platform, p_profile_id, p_actor);
        PERFORM social_queue__control('resume', p_actor, p_platform, p_profile_id, NULL);
    END IF;
END;
$$;

COMMENT ON FUNCTION social_profile_resume(text, text, text) IS
'Publishes for a paused profile on a platform again; its overdue posts become '
'due now. Resuming an account that is not paused changes nothing.';

-- counts that stay cheap ---------------------------------------------------------

-- Posts by platform and status, kept by statement triggers as insert-only
-- deltas (so concurrent writers never wait on a counter row) and folded into
-- social_queue_counts by social_queue_compact_counts, which the worker's
-- sweeper runs every minute. Counting the table instead reads every row: a
-- second at ten million, on every ops page refresh.
CREATE TABLE social_queue_counts (
    platform text NOT NULL,
    status social_status NOT NULL,
    posts bigint NOT NULL,
    PRIMARY KEY (platform, status)
);
CREATE TABLE social_queue_count_deltas (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    platform text NOT NULL,
    status social_status NOT NULL,
    delta bigint NOT NULL
);

CREATE FUNCTION social_queue__count_inserted()
    RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
BEGIN
    INSERT INTO social_queue_count_deltas (platform, status, delta)
    SELECT n.platform, n.status, count(*) FROM new_rows n GROUP BY 1, 2;
    RETURN NULL;
END;
$$;

CREATE FUNCTION social_queue__count_updated()
    RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
BEGIN
    INSERT INTO social_queue_count_deltas (platform, status, delta)
    SELECT platform, status, sum(delta) FROM (
        SELECT n.platform, n.status, 1 AS delta FROM new_rows n
        UNION ALL
        SELECT o.platform, o.status, -1 FROM old_rows o
    ) AS changes
    GROUP BY 1, 2
    HAVING sum(delta) <> 0;
    RETURN NULL;
END;
$$;

CREATE FUNCTION social_queue__count_deleted()
    RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
BEGIN
    INSERT INTO social_queue_count_deltas (platform, status, delta)
    SELECT o.platform, o.status, -count(*) FROM old_rows o GROUP BY 1, 2;
    RETURN NULL;
END;
$$;

CREATE FUNCTION social_queue__count_truncated()
    RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
BEGIN
    DELETE FROM social_queue_count_deltas;
    DELETE FROM social_queue_counts;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION social_queue__count_inserted() IS
'Internal trigger: adds inserted posts to the counts by platform and status.';
COMMENT ON FUNCTION social_queue__count_updated() IS
'Internal trigger: moves updated posts between the counts by platform and status.';
COMMENT ON FUNCTION social_queue__count_deleted() IS
'Internal trigger: removes deleted posts from the counts by platform and status.';
COMMENT ON FUNCTION social_queue__count_truncated() IS
'Internal trigger: empties the counts when social_queue is truncated.';

-- Created before the first count: creating a trigger locks out writers until
-- this migration commits, so no change falls between the count and the deltas.
CREATE TRIGGER social_queue_count_inserted
    AFTER INSERT ON social_queue REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION social_queue__count_inserted();
CREATE TRIGGER social_queue_count_updated
    AFTER UPDATE ON social_queue REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION social_queue__count_updated();
CREATE TRIGGER social_queue_count_deleted
    AFTER DELETE ON social_queue REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION social_queue__count_deleted();
CREATE TRIGGER social_queue_count_truncated
    AFTER TRUNCATE ON social_queue
    FOR EACH STATEMENT EXECUTE FUNCTION social_queue__count_truncated();

INSERT INTO social_queue_counts (platform, status, posts)
SELECT platform, status, count(*) FROM social_queue GROUP BY 1, 2;

CREATE FUNCTION social_queue_compact_counts()
    RETURNS bigint
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
DECLARE
    v_folded bigint;
BEGIN
    -- Each delta row is deleted by exactly one caller, so two compactions at
    -- once fold every delta once.
    WITH folded AS (
        DELETE FROM social_queue_count_deltas RETURNING platform, status, delta
    ), sums AS (
        SELECT platform, status, sum(delta) AS delta, count(*) AS n
          FROM folded GROUP BY 1, 2
    ), merged AS (
        INSERT INTO social_queue_counts AS c (platform, status, posts)
        SELECT platform, status, delta FROM sums
        ON CONFLICT (platform, status) DO UPDATE SET posts = c.posts + excluded.posts
    )
    SELECT coalesce(sum(n), 0) INTO v_folded FROM sums;
    RETURN v_folded;
END;
$$;

COMMENT ON FUNCTION social_queue_compact_counts() IS
'Folds the count deltas written since the last call into social_queue_counts '
'and returns how many it folded. Run by the worker''s sweeper every minute; '
'social_queue_stats is correct whether or not it has run.';

CREATE OR REPLACE FUNCTION social_queue_sweep(p_grace interval DEFAULT '1 minute',
                                              p_limit integer DEFAULT 1000)
    RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
DECLARE
    v_id uuid;
    v_count integer := 0;
BEGIN
    IF p_limit IS NULL OR p_limit < 0 THEN
        PERFORM social_queue__invalid('the sweep limit must be 0 or more');
    END IF;
    FOR v_id IN
        SELECT q.id FROM social_queue q
         WHERE q.status IN ('queued', 'retrying')
           AND q.next_attempt_at < now() - p_grace
           AND NOT EXISTS (SELECT FROM procrastinate_jobs j
                            WHERE j.queueing_lock = q.id::text AND j.status = 'todo')
           AND NOT social_queue__held_back(q.platform, q.profile_id)
         ORDER BY q.next_attempt_at
         LIMIT p_limit
           FOR UPDATE OF q SKIP LOCKED
    LOOP
        PERFORM social_queue__defer_publish(v_id, now());
        v_count := v_count + 1;
    END LOOP;
    -- The sweeper runs every minute on one worker: the right beat for this.
    PERFORM social_queue_compact_counts();
    RETURN v_count;
END;
$$;

COMMENT ON FUNCTION social_queue_sweep(interval, integer) IS
'Defers a publish job, due now, for up to p_limit waiting posts that have been '
'due for longer than p_grace without one (their worker died between fetching '
'the job and claiming the post), and folds the count deltas '
'(social_queue_compact_counts). Returns how many jobs it deferred. Run by the '
'worker every minute.';

CREATE OR REPLACE FUNCTION social_queue_stats()
    RETURNS TABLE (platform text, status social_status, posts bigint,
                   oldest_overdue_at timestamptz)
    LANGUAGE sql
    STABLE
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
    WITH counts AS (
        SELECT c.platform, c.status, sum(c.posts)::bigint AS posts
          FROM (SELECT c.platform, c.status, c.posts FROM social_queue_counts c
                UNION ALL
                SELECT d.platform, d.status, d.delta FROM social_queue_count_deltas d) c
         GROUP BY 1, 2
    ), overdue AS (
        -- Waiting posts only, through the partial index of what is due.
        SELECT q.platform, q.status, min(q.next_attempt_at) AS oldest
          FROM social_queue q
         WHERE q.status IN ('queued', 'retrying') AND q.next_attempt_at < now()
         GROUP BY 1, 2
    )
    SELECT c.platform, c.status, c.posts, o.oldest
      FROM counts c
      LEFT JOIN overdue o ON o.platform = c.platform AND o.status = c.status
     WHERE c.posts > 0
     ORDER BY c.platform, c.status;
$$;

COMMENT ON FUNCTION social_queue_stats() IS
'Number of posts by platform and status (from counts kept by trigger, so it '
'does not read the table); for waiting posts, when the oldest overdue one was '
'due (NULL when none is overdue).';

-- privileges ------------------------------------------------------------------------

-- As in 0004: not PUBLIC's to execute, granted to social_queue_caller.
-- tests/sql/test_caller_role.py checks that later files keep to these rules.
DO $$
DECLARE
    v_function regprocedure;
BEGIN
    -- Every SECURITY DEFINER function searches our schema, then the
    -- caller's temporary schema last: left out, pg_temp is searched first,
    -- and a caller's temporary table named like ours would be read (or a
    -- trigger on it run) with the owner's rights.
    FOR v_function IN
        SELECT p.oid::regprocedure FROM pg_proc p
         WHERE p.pronamespace = current_schema()::regnamespace
           AND p.proname LIKE 'social\_%' AND p.prosecdef
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp',
                       v_function, current_schema());
    END LOOP;

    FOR v_function IN
        SELECT p.oid::regprocedure FROM pg_proc p
         WHERE p.pronamespace = current_schema()::regnamespace
           AND p.proname LIKE 'social\_%'
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', v_function);
    END LOOP;

    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'social_queue_caller') THEN
        RETURN;
    END IF;
    GRANT SELECT ON social_control_events, social_queue_counts TO social_queue_caller;
    FOR v_function IN
        SELECT p.oid::regprocedure FROM pg_proc p
         WHERE p.pronamespace = current_schema()::regnamespace
           AND p.proname LIKE 'social\_%' AND p.proname NOT LIKE '%\_\_%'
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO social_queue_caller', v_function);
    END LOOP;
    -- Deleting history and webhook receipts (which guard against replays) is
    -- the worker's upkeep, not something another system may do.
    REVOKE EXECUTE ON FUNCTION social_queue_prune(interval, integer),
                               social_queue_webhook_prune(interval)
      FROM social_queue_caller;
END;
$$;
