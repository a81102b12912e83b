-- The SQL API: the only way a post changes status. Each function locks the
-- post, checks its current status, changes it, and lets the triggers record
-- the event, notify listeners and defer the publish job. Every function is
-- SECURITY DEFINER so that the social_queue_caller role needs no table
-- privileges beyond SELECT.

-- enqueue ---------------------------------------------------------------

CREATE FUNCTION social_queue_enqueue(
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

    -- The content is checked by the table's BEFORE INSERT trigger, which
    -- runs before the idempotency key is compared: once, for every writer.
    PERFORM social_queue__act('enqueue', p_actor);
    INSERT INTO social_queue (profile_id, platform, content, scheduled_at,
                              idempotency_key, source, source_ref)
    VALUES (p_profile_id, p_platform, p_content, p_scheduled_at,
            p_idempotency_key, coalesce(p_source, 'sql'), p_source_ref)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id INTO v_id;

    IF v_id IS NULL THEN
        -- The key exists: that post is the answer, whatever it became since.
        SELECT id INTO v_id FROM social_queue WHERE idempotency_key = p_idempotency_key;
    END IF;
    PERFORM social_queue__act(NULL, NULL);
    RETURN v_id;
END;
$$;

COMMENT ON FUNCTION social_queue_enqueue(text, text, jsonb, timestamptz, text, text, text, text) IS
'Queues a post for publishing at p_scheduled_at and returns its id. Checks the '
'platform and the content against the platform''s limits first (SQ422). With '
'an idempotency key that already exists, returns that post''s id and changes '
'nothing.';

-- claim, and the worker's side -------------------------------------------

-- Claims one locked, waiting post if it may be published now; returns the
-- claimed row, or NULL when it may not. A post held back by an account's rate
-- limit is moved to the time the limit ends (which re-defers its job).
CREATE FUNCTION social_queue__claim_row(p_post social_queue, p_worker text)
    RETURNS social_queue
    LANGUAGE plpgsql
AS $$
DECLARE
    v_account social_accounts;
    v_post social_queue;
BEGIN
    IF p_post.status NOT IN ('queued', 'retrying') OR p_post.next_attempt_at > now() THEN
        RETURN NULL;
    END IF;
    IF (SELECT paused FROM social_platforms WHERE platform = p_post.platform) THEN
        RETURN NULL;
    END IF;
    SELECT * INTO v_account FROM social_accounts
     WHERE profile_id = p_post.profile_id AND platform = p_post.platform;
    IF v_account.paused THEN
        RETURN NULL;
    END IF;
    IF v_account.rate_limited_until > now() THEN
        PERFORM social_queue__act('rate_limit_wait', p_worker);
        UPDATE social_queue SET next_attempt_at = v_account.rate_limited_until
         WHERE id = p_post.id;
        RETURN NULL;
    END IF;

    PERFORM social_queue__act('claim', p_worker);
    UPDATE social_queue
       SET status = 'posting',
           attempts = attempts + 1,
           claimed_by = p_worker,
           lease_expires_at = now() + (SELECT lease_duration FROM social_queue_settings)
     WHERE id = p_post.id
    RETURNING * INTO v_post;

    INSERT INTO social_queue_attempts (post_id, number, worker)
    VALUES (v_post.id, v_post.attempts, p_worker);
    RETURN v_post;
END;
$$;

CREATE FUNCTION social_queue_claim(p_id uuid, p_worker text)
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
    -- SKIP LOCKED: a post another transaction is changing is not claimable
    -- now; its own change will re-defer the job if it stays due.
    SELECT * INTO v_post FROM social_queue WHERE id = p_id FOR UPDATE SKIP LOCKED;
    IF FOUND THEN
        v_post := social_queue__claim_row(v_post, p_worker);
        IF v_post.id IS NOT NULL THEN
            RETURN NEXT v_post;
        END IF;
    END IF;
    PERFORM social_queue__act(NULL, NULL);
END;
$$;

COMMENT ON FUNCTION social_queue_claim(uuid, text) IS
'Claims post p_id for worker p_worker: queued|retrying -> posting, when it is '
'due and neither its platform nor its account is paused or rate limited. '
'Returns the claimed row with attempts = this attempt''s number, or no row. '
'An attempt row is opened. The lease lasts social_queue_settings.lease_duration.';

CREATE FUNCTION social_queue_claim_due(p_worker text, p_limit integer DEFAULT 1,
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
    FOR v_post IN
        SELECT q.* FROM social_queue q
         WHERE q.status IN ('queued', 'retrying') AND q.next_attempt_at <= now()
           AND (p_platforms IS NULL OR q.platform = ANY (p_platforms))
           AND NOT EXISTS (SELECT FROM social_platforms p
                            WHERE p.platform = q.platform AND p.paused)
         ORDER BY q.next_attempt_at
         LIMIT greatest(p_limit, 0)
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

COMMENT ON FUNCTION social_queue_claim_due(text, integer, text[]) IS
'Claims up to p_limit due posts, oldest due first, optionally only on '
'p_platforms, skipping posts locked by others. Same transition and result as '
'social_queue_claim, for systems that poll instead of running jobs.';

-- Loads a post for the worker's report on attempt p_attempt, raising SQ409
-- if the worker no longer holds that claim (its lease was reaped, or the post
-- was retried and claimed again).
CREATE FUNCTION social_queue__lock_claim(p_id uuid, p_attempt integer, p_action text)
    RETURNS social_queue
    LANGUAGE plpgsql
AS $$
DECLARE
    v_post social_queue := social_queue__lock(p_id, p_action);
BEGIN
    IF v_post.status <> 'posting' THEN
        PERFORM social_queue__illegal(p_id, v_post.status, p_action, 'posting');
    END IF;
    IF v_post.attempts <> p_attempt THEN
        RAISE EXCEPTION 'cannot % post %: attempt % no longer holds the claim (attempt % does)',
            p_action, p_id, p_attempt, v_post.attempts
            USING ERRCODE = 'SQ409';
    END IF;
    RETURN v_post;
END;
$$;

CREATE FUNCTION social_queue_complete(p_id uuid, p_attempt integer, p_remote_id text,
                                      p_remote_url text DEFAULT NULL, p_actor text DEFAULT NULL)
    RETURNS social_queue
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
DECLARE
    v_post social_queue := social_queue__lock_claim(p_id, p_attempt, 'complete');
BEGIN
    IF p_remote_id IS NULL OR p_remote_id = '' THEN
        PERFORM social_queue__invalid('remote_id is required to complete a post');
    END IF;

    PERFORM social_queue__act('complete', coalesce(p_actor, v_post.claimed_by));
    UPDATE social_queue
       SET status = 'posted', remote_id = p_remote_id, remote_url = p_remote_url,
           posted_at = now()
     WHERE id = p_id
    RETURNING * INTO v_post;
    UPDATE social_queue_attempts
       SET finished_at = clock_timestamp(), outcome = 'published', remote_id = p_remote_id
     WHERE post_id = p_id AND number = p_attempt;
    PERFORM social_queue__act(NULL, NULL);
    RETURN v_post;
END;
$$;

COMMENT ON FUNCTION social_queue_complete(uuid, integer, text, text, text) IS
'Records that attempt p_attempt published post p_id as p_remote_id: posting -> '
'posted. Raises SQ409 if the post is not posting or another attempt holds it.';

CREATE FUNCTION social_queue_fail(p_id uuid, p_attempt integer, p_error_kind social_error_kind,
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
    v_next timestamptz;
BEGIN
    IF p_error_kind IS NULL THEN
        PERFORM social_queue__invalid('error_kind is required to fail a post');
    END IF;
    SELECT * INTO v_settings FROM social_queue_settings;

    IF p_error_kind = 'rate_limited' THEN
        v_status := 'retrying';
        v_next := CASE WHEN p_retry_at IS NULL THEN social_queue_backoff(v_budget + 1)
                       ELSE greatest(p_retry_at, now()) END;
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
            v_next := social_queue_backoff(v_budget, p_retry_at);
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
'backoff time (transient, while budget remains; rate_limited, at p_retry_at, '
'without spending budget and holding back the account''s other posts) or '
'posting -> failed (budget spent, auth, invalid, config, unknown_outcome). '
'Raises SQ409 if the post is not posting or another attempt holds it.';

CREATE FUNCTION social_queue_extend_lease(p_id uuid, p_attempt integer)
    RETURNS timestamptz
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
DECLARE
    v_until timestamptz;
BEGIN
    PERFORM social_queue__lock_claim(p_id, p_attempt, 'extend the lease of');
    UPDATE social_queue
       SET lease_expires_at = now() + (SELECT lease_duration FROM social_queue_settings)
     WHERE id = p_id
    RETURNING lease_expires_at INTO v_until;
    RETURN v_until;
END;
$$;

COMMENT ON FUNCTION social_queue_extend_lease(uuid, integer) IS
'Extends the lease of a worker still publishing post p_id (attempt p_attempt) '
'by the configured lease duration; returns the new expiry. Raises SQ409 if the '
'claim was lost.';

CREATE FUNCTION social_queue_save_handle(p_id uuid, p_attempt integer, p_name text, p_value jsonb)
    RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
BEGIN
    IF p_name IS NULL OR p_name = '' THEN
        PERFORM social_queue__invalid('a handle needs a name');
    END IF;
    PERFORM social_queue__lock_claim(p_id, p_attempt, 'save a handle for');
    UPDATE social_queue
       SET handles = handles || jsonb_build_object(p_name, p_value)
     WHERE id = p_id;
END;
$$;

COMMENT ON FUNCTION social_queue_save_handle(uuid, integer, text, jsonb) IS
'Saves an intermediate handle (container id, upload session) of the attempt in '
'progress under p_name in handles, before the adapter''s next call, so that an '
'unknown outcome can be reconciled. Raises SQ409 if the claim was lost.';

CREATE FUNCTION social_queue_reap_expired(p_limit integer DEFAULT 100, p_actor text DEFAULT 'reaper')
    RETURNS SETOF social_queue
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
DECLARE
    v_post social_queue;
    v_message text;
BEGIN
    PERFORM social_queue__act('reap', p_actor);
    FOR v_post IN
        SELECT * FROM social_queue
         WHERE status = 'posting' AND lease_expires_at < now()
         ORDER BY lease_expires_at
         LIMIT greatest(p_limit, 0)
           FOR UPDATE SKIP LOCKED
    LOOP
        v_message := format(
            'worker %s stopped reporting during attempt %s (lease expired %s); '
            'the post may be live: check the account before retrying',
            v_post.claimed_by, v_post.attempts, v_post.lease_expires_at);
        UPDATE social_queue
           SET status = 'failed', error_kind = 'unknown_outcome', last_error = v_message
         WHERE id = v_post.id
        RETURNING * INTO v_post;
        UPDATE social_queue_attempts
           SET finished_at = clock_timestamp(), outcome = 'lease_expired',
               error_kind = 'unknown_outcome', error_message = v_message
         WHERE post_id = v_post.id AND number = v_post.attempts;
        RETURN NEXT v_post;
    END LOOP;
    PERFORM social_queue__act(NULL, NULL);
END;
$$;

COMMENT ON FUNCTION social_queue_reap_expired(integer, text) IS
'Moves up to p_limit posts whose worker lease expired from posting to failed '
'with error_kind unknown_outcome (the worker may have published before it was '
'lost) and returns them.';

CREATE FUNCTION social_queue_mark_posted(p_id uuid, p_remote_id text,
                                         p_remote_url text DEFAULT NULL, p_actor text DEFAULT NULL)
    RETURNS social_queue
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
DECLARE
    v_post social_queue := social_queue__lock(p_id, 'mark as posted');
BEGIN
    IF v_post.status <> 'failed' OR v_post.error_kind <> 'unknown_outcome' THEN
        PERFORM social_queue__illegal(p_id, v_post.status, 'mark as posted',
                                      'failed with an unknown outcome');
    END IF;
    IF p_remote_id IS NULL OR p_remote_id = '' THEN
        PERFORM social_queue__invalid('remote_id is required to mark a post as posted');
    END IF;

    PERFORM social_queue__act('mark_posted', p_actor);
    UPDATE social_queue
       SET status = 'posted', remote_id = p_remote_id, remote_url = p_remote_url,
           posted_at = now()
     WHERE id = p_id
    RETURNING * INTO v_post;
    PERFORM social_queue__act(NULL, NULL);
    RETURN v_post;
END;
$$;

COMMENT ON FUNCTION social_queue_mark_posted(uuid, text, text, text) IS
'Records that a post whose outcome was unknown is live after all (found by '
'reconciliation or by an operator): failed (unknown_outcome) -> posted.';

-- operator actions ------------------------------------------------------

-- One implementation of pause, resume, retry and cancel for a locked post;
-- returns the new row or raises SQ409 naming the post, status and action.
CREATE FUNCTION social_queue__operate(p_post social_queue, p_action text, p_actor text)
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
        UPDATE social_queue
           SET status = 'queued', next_attempt_at = now(), budget_used = 0
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

-- Many posts at once: each post that allows the action changes, the others
-- are reported with the reason, and nothing raises for one bad id.
CREATE FUNCTION social_queue__operate_many(p_ids uuid[], p_action text, p_actor text)
    RETURNS TABLE (id uuid, status social_status, changed boolean, reason text)
    LANGUAGE plpgsql
AS $$
DECLARE
    v_id uuid;
    v_post social_queue;
BEGIN
    FOR v_id IN SELECT DISTINCT u FROM unnest(p_ids) AS u WHERE u IS NOT NULL ORDER BY u LOOP
        SELECT * INTO v_post FROM social_queue q WHERE q.id = v_id FOR UPDATE;
        IF NOT FOUND THEN
            RETURN QUERY SELECT v_id, NULL::social_status, false, 'no such post';
            CONTINUE;
        END IF;
        BEGIN
            v_post := social_queue__operate(v_post, p_action, p_actor);
            RETURN QUERY SELECT v_id, v_post.status, true, NULL::text;
        EXCEPTION WHEN SQLSTATE 'SQ409' THEN
            RETURN QUERY SELECT v_id, v_post.status, false, SQLERRM;
        END;
    END LOOP;
END;
$$;

CREATE FUNCTION social_queue_pause(p_id uuid, p_actor text DEFAULT NULL)
    RETURNS social_queue
    LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT
AS $$ SELECT social_queue__operate(social_queue__lock(p_id, 'pause'), 'pause', p_actor) $$;

CREATE FUNCTION social_queue_resume(p_id uuid, p_actor text DEFAULT NULL)
    RETURNS social_queue
    LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT
AS $$ SELECT social_queue__operate(social_queue__lock(p_id, 'resume'), 'resume', p_actor) $$;

CREATE FUNCTION social_queue_retry(p_id uuid, p_actor text DEFAULT NULL)
    RETURNS social_queue
    LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT
AS $$ SELECT social_queue__operate(social_queue__lock(p_id, 'retry'), 'retry', p_actor) $$;

CREATE FUNCTION social_queue_cancel(p_id uuid, p_actor text DEFAULT NULL)
    RETURNS social_queue
    LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT
AS $$ SELECT social_queue__operate(social_queue__lock(p_id, 'cancel'), 'cancel', p_actor) $$;

CREATE FUNCTION social_queue_pause(p_ids uuid[], p_actor text DEFAULT NULL)
    RETURNS TABLE (id uuid, status social_status, changed boolean, reason text)
    LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT
AS $$ SELECT * FROM social_queue__operate_many(p_ids, 'pause', p_actor) $$;

CREATE FUNCTION social_queue_resume(p_ids uuid[], p_actor text DEFAULT NULL)
    RETURNS TABLE (id uuid, status social_status, changed boolean, reason text)
    LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT
AS $$ SELECT * FROM social_queue__operate_many(p_ids, 'resume', p_actor) $$;

CREATE FUNCTION social_queue_retry(p_ids uuid[], p_actor text DEFAULT NULL)
    RETURNS TABLE (id uuid, status social_status, changed boolean, reason text)
    LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT
AS $$ SELECT * FROM social_queue__operate_many(p_ids, 'retry', p_actor) $$;

CREATE FUNCTION social_queue_cancel(p_ids uuid[], p_actor text DEFAULT NULL)
    RETURNS TABLE (id uuid, status social_status, changed boolean, reason text)
    LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT
AS $$ SELECT * FROM social_queue__operate_many(p_ids, 'cancel', p_actor) $$;

COMMENT ON FUNCTION social_queue_pause(uuid, text) IS
'Holds a post back: queued|retrying -> paused. Returns the row; raises SQ404 '
'for an unknown id and SQ409 for any other status.';
COMMENT ON FUNCTION social_queue_resume(uuid, text) IS
'Puts a paused post back in the queue: paused -> queued, due at its scheduled '
'time or now, whichever is later. Returns the row; raises SQ404 or SQ409.';
COMMENT ON FUNCTION social_queue_retry(uuid, text) IS
'Tries a post again now with a fresh retry budget: failed|retrying|paused -> '
'queued. Returns the row; raises SQ404 or SQ409.';
COMMENT ON FUNCTION social_queue_cancel(uuid, text) IS
'Makes sure a post is never published: queued|retrying|paused|failed -> '
'cancelled. A post being published or already posted raises SQ409.';
COMMENT ON FUNCTION social_queue_pause(uuid[], text) IS
'social_queue_pause for many posts: one row per distinct id with its status, '
'whether it changed, and why not.';
COMMENT ON FUNCTION social_queue_resume(uuid[], text) IS
'social_queue_resume for many posts: one row per distinct id with its status, '
'whether it changed, and why not.';
COMMENT ON FUNCTION social_queue_retry(uuid[], text) IS
'social_queue_retry for many posts: one row per distinct id with its status, '
'whether it changed, and why not.';
COMMENT ON FUNCTION social_queue_cancel(uuid[], text) IS
'social_queue_cancel for many posts: one row per distinct id with its status, '
'whether it changed, and why not.';

-- iCadence's view: cancel and reschedule ----------------------------------

CREATE FUNCTION social_queue_cancel_scheduled(p_profile_id text, p_scheduled_at timestamptz,
                                              p_source_ref text DEFAULT NULL,
                                              p_actor text DEFAULT NULL)
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
        ARRAY(SELECT q.id FROM social_queue q
               WHERE (q.profile_id = p_profile_id AND q.scheduled_at = p_scheduled_at)
                  OR (p_source_ref IS NOT NULL AND q.source_ref = p_source_ref)),
        'cancel', p_actor);
END;
$$;

COMMENT ON FUNCTION social_queue_cancel_scheduled(text, timestamptz, text, text) IS
'Cancels every post of p_profile_id scheduled at p_scheduled_at, and every post '
'whose source_ref is p_source_ref (iCadence''s schedule.deleted). Posts already '
'posted or being published are left alone and reported with the reason.';

CREATE FUNCTION social_queue_reschedule(p_id uuid, p_scheduled_at timestamptz DEFAULT NULL,
                                        p_content jsonb DEFAULT NULL, p_actor text DEFAULT NULL)
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

    PERFORM social_queue__act('reschedule', p_actor);
    UPDATE social_queue
       SET scheduled_at = coalesce(p_scheduled_at, scheduled_at),
           content = coalesce(p_content, content),
           -- A new time starts the wait over; new content alone keeps it.
           status = CASE WHEN p_scheduled_at IS NOT NULL AND status = 'retrying'
                         THEN 'queued' ELSE status END,
           next_attempt_at = CASE
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
'new time. Content is checked as at enqueue (SQ422). Raises SQ404 or SQ409.';

-- platforms and profiles ------------------------------------------------

CREATE FUNCTION social_platform_pause(p_platform text, p_reason text DEFAULT NULL,
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
    PERFORM pg_notify('social_queue', json_build_object(
        'platform', p_platform, 'paused', true)::text);
    RETURN v_platform;
END;
$$;

COMMENT ON FUNCTION social_platform_pause(text, text, text) IS
'Stops publishing to a whole platform: workers claim none of its posts until '
'social_platform_resume. Posts keep their status. Returns the platform row.';

-- Makes a platform's or account's overdue posts due now, so their jobs are
-- deferred again after a pause that held them back.
CREATE FUNCTION social_queue__wake(p_platform text, p_profile_id text, p_actor text)
    RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM social_queue__act('wake', p_actor);
    UPDATE social_queue
       SET next_attempt_at = now()
     WHERE status IN ('queued', 'retrying') AND next_attempt_at < now()
       AND platform = p_platform
       AND (p_profile_id IS NULL OR profile_id = p_profile_id);
    PERFORM social_queue__act(NULL, NULL);
END;
$$;

CREATE FUNCTION social_platform_resume(p_platform text, p_actor text DEFAULT NULL)
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
    PERFORM pg_notify('social_queue', json_build_object(
        'platform', p_platform, 'paused', false)::text);
    RETURN v_platform;
END;
$$;

COMMENT ON FUNCTION social_platform_resume(text, text) IS
'Publishes to a platform again; its overdue posts become due now. Returns the '
'platform row.';

CREATE FUNCTION social_profile_pause(p_profile_id text, p_platform text,
                                     p_reason text DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM social_queue__require_platform(p_platform);
    INSERT INTO social_accounts (profile_id, platform, paused, paused_reason, paused_at)
    VALUES (p_profile_id, p_platform, true, p_reason, now())
    ON CONFLICT (profile_id, platform) DO UPDATE
       SET paused = true, paused_reason = excluded.paused_reason,
           paused_at = coalesce(social_accounts.paused_at, now()), updated_at = now();
END;
$$;

COMMENT ON FUNCTION social_profile_pause(text, text, text) IS
'Stops publishing for one profile on one platform (its account) until '
'social_profile_resume; its posts keep their status.';

CREATE FUNCTION social_profile_resume(p_profile_id text, p_platform text,
                                      p_actor text DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM social_queue__require_platform(p_platform);
    UPDATE social_accounts
       SET paused = false, paused_reason = NULL, paused_at = NULL, updated_at = now()
     WHERE profile_id = p_profile_id AND platform = p_platform;
    PERFORM social_queue__wake(p_platform, p_profile_id, p_actor);
END;
$$;

COMMENT ON FUNCTION social_profile_resume(text, text, text) IS
'Publishes for a paused profile on a platform again; its overdue posts become '
'due now.';

-- reading ------------------------------------------------------------------

CREATE FUNCTION social_queue_stats()
    RETURNS TABLE (platform text, status social_status, posts bigint,
                   oldest_overdue_at timestamptz)
    LANGUAGE sql
    STABLE
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
    SELECT q.platform, q.status, count(*),
           min(q.next_attempt_at) FILTER (WHERE q.next_attempt_at < now())
      FROM social_queue q
     GROUP BY q.platform, q.status
     ORDER BY q.platform, q.status;
$$;

COMMENT ON FUNCTION social_queue_stats() IS
'Number of posts by platform and status; for waiting posts, when the oldest '
'overdue one was due (NULL when none is overdue).';
