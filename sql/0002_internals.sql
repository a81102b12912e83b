-- Internals shared by the API functions: errors, actor bookkeeping, content
-- validation, backoff, and the triggers that record events, send
-- notifications and defer procrastinate jobs. Names with a double underscore
-- are not part of the API.

-- Errors carry their own SQLSTATE so callers can map them without parsing
-- text: SQ404 no such post, SQ409 illegal transition, SQ422 invalid input.

CREATE FUNCTION social_queue__illegal(p_id uuid, p_status social_status, p_action text, p_allowed text)
    RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'cannot % post %: it is %, and % needs it %',
        p_action, p_id, p_status, p_action, p_allowed
        USING ERRCODE = 'SQ409',
              DETAIL = json_build_object('id', p_id, 'status', p_status,
                                         'action', p_action)::text;
END;
$$;

CREATE FUNCTION social_queue__not_found(p_id uuid, p_action text)
    RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'cannot % post %: no such post', p_action, p_id
        USING ERRCODE = 'SQ404',
              DETAIL = json_build_object('id', p_id, 'action', p_action)::text;
END;
$$;

CREATE FUNCTION social_queue__invalid(p_message text)
    RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION '%', p_message USING ERRCODE = 'SQ422';
END;
$$;

-- Who is acting and how, for the event the status trigger writes. Kept in
-- transaction-local settings so that even a raw UPDATE (which sets nothing)
-- is recorded, as action 'update' by the SQL role.
CREATE FUNCTION social_queue__act(p_action text, p_actor text)
    RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM set_config('social_queue.action', coalesce(p_action, ''), true),
            set_config('social_queue.actor', coalesce(p_actor, ''), true);
END;
$$;

-- Raises SQ422 naming the known platforms unless p_platform is one of them.
CREATE FUNCTION social_queue__require_platform(p_platform text)
    RETURNS social_platforms
    LANGUAGE plpgsql
    STABLE
AS $$
DECLARE
    v_platform social_platforms;
BEGIN
    SELECT * INTO v_platform FROM social_platforms WHERE platform = p_platform;
    IF NOT FOUND THEN
        PERFORM social_queue__invalid(format(
            'unknown platform %L; known platforms: %s', coalesce(p_platform, 'null'),
            (SELECT string_agg(platform, ', ' ORDER BY platform) FROM social_platforms)));
    END IF;
    RETURN v_platform;
END;
$$;

CREATE FUNCTION social_queue__actor()
    RETURNS text
    LANGUAGE sql
    STABLE
AS $$
    SELECT coalesce(nullif(current_setting('social_queue.actor', true), ''),
                    'sql:' || session_user);
$$;

-- Checks content against what the database knows of the platform's limits.
CREATE FUNCTION social_queue_check_content(p_platform text, p_content jsonb)
    RETURNS void
    LANGUAGE plpgsql
    STABLE
AS $$
DECLARE
    v_platform social_platforms;
    v_text text;
    v_media jsonb;
    v_media_count integer := 0;
    v_key text;
    v_url jsonb;
    v_length integer;
BEGIN
    IF p_platform IS NULL THEN
        PERFORM social_queue__invalid('platform is required');
    END IF;
    v_platform := social_queue__require_platform(p_platform);

    IF p_content IS NULL OR jsonb_typeof(p_content) <> 'object' THEN
        PERFORM social_queue__invalid(format(
            'content must be a JSON object with "text" and/or "mediaUrls", not %s',
            coalesce(jsonb_typeof(p_content), 'null')));
    END IF;
    FOR v_key IN SELECT jsonb_object_keys(p_content) LOOP
        IF v_key NOT IN ('text', 'mediaUrls', 'options') THEN
            PERFORM social_queue__invalid(format(
                'content has an unknown field %L; allowed: text, mediaUrls, options', v_key));
        END IF;
    END LOOP;

    IF p_content ? 'text' AND jsonb_typeof(p_content -> 'text') NOT IN ('string', 'null') THEN
        PERFORM social_queue__invalid('content.text must be a string');
    END IF;
    v_text := coalesce(p_content ->> 'text', '');

    v_media := p_content -> 'mediaUrls';
    IF v_media IS NOT NULL AND jsonb_typeof(v_media) <> 'null' THEN
        IF jsonb_typeof(v_media) <> 'array' THEN
            PERFORM social_queue__invalid('content.mediaUrls must be an array of URLs');
        END IF;
        FOR v_url IN SELECT jsonb_array_elements(v_media) LOOP
            IF jsonb_typeof(v_url) <> 'string' OR (v_url #>> '{}') !~ '^https?://[^\s/]+\S*$' THEN
                PERFORM social_queue__invalid(format(
                    'content.mediaUrls[%s] is not an http(s) URL: %s',
                    v_media_count, left(v_url::text, 200)));
            END IF;
            v_media_count := v_media_count + 1;
        END LOOP;
    END IF;

    IF p_content ? 'options' AND jsonb_typeof(p_content -> 'options') <> 'object' THEN
        PERFORM social_queue__invalid('content.options must be an object');
    END IF;

    IF btrim(v_text) = '' AND v_media_count = 0 THEN
        PERFORM social_queue__invalid('content is empty: give text, mediaUrls or both');
    END IF;
    IF v_platform.media_required AND v_media_count = 0 THEN
        PERFORM social_queue__invalid(format(
            '%s posts need at least one media URL', v_platform.display_name));
    END IF;
    IF v_media_count > v_platform.max_media_count THEN
        PERFORM social_queue__invalid(format(
            '%s posts take at most %s media, this one has %s',
            v_platform.display_name, v_platform.max_media_count, v_media_count));
    END IF;

    IF v_platform.max_text_length IS NOT NULL THEN
        IF v_platform.url_length IS NOT NULL THEN
            v_length := char_length(regexp_replace(
                v_text, 'https?://\S+', repeat('u', v_platform.url_length), 'g'));
        ELSE
            v_length := char_length(v_text);
        END IF;
        IF v_length > v_platform.max_text_length THEN
            PERFORM social_queue__invalid(format(
                'text is %s characters, %s allows %s',
                v_length, v_platform.display_name, v_platform.max_text_length));
        END IF;
    END IF;
END;
$$;

-- The time of the next attempt after `p_budget_used` spent attempts:
-- base * 2^(n-1), capped, lowered by up to `jitter` of itself at random, and
-- never before the platform's retry-after.
CREATE FUNCTION social_queue_backoff(p_budget_used integer, p_retry_at timestamptz DEFAULT NULL)
    RETURNS timestamptz
    LANGUAGE sql
    VOLATILE
AS $$
    SELECT greatest(
        now() + make_interval(secs =>
            least(extract(epoch FROM s.backoff_cap),
                  extract(epoch FROM s.backoff_base)
                      * power(2, least(greatest(p_budget_used, 1) - 1, 62)))
            * (1 - s.backoff_jitter * random())),
        p_retry_at)
    FROM social_queue_settings s;
$$;

-- Makes sure one procrastinate job will run the post's publish task at
-- `p_at`: moves the waiting job if there is one, defers a new one if not.
-- The post's row lock serialises callers for one post.
CREATE FUNCTION social_queue__defer_publish(p_id uuid, p_at timestamptz)
    RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE procrastinate_jobs
       SET scheduled_at = p_at
     WHERE queueing_lock = p_id::text AND status = 'todo';
    IF NOT FOUND THEN
        PERFORM procrastinate_defer_jobs_v1(ARRAY[
            ROW('publish', 'publish_post', 0, NULL, p_id::text,
                jsonb_build_object('post_id', p_id), p_at)
        ]::procrastinate_job_to_defer_v1[]);
    END IF;
END;
$$;

-- BEFORE INSERT OR UPDATE: validates content, keeps next_attempt_at and the
-- claim consistent with the status, so a plain INSERT of
-- (profile_id, platform, content, scheduled_at) is a complete queued post.
CREATE FUNCTION social_queue__before_write()
    RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
BEGIN
    IF NEW.scheduled_at IS NULL THEN
        PERFORM social_queue__invalid('scheduled_at is required');
    END IF;
    IF TG_OP = 'INSERT'
       OR NEW.content IS DISTINCT FROM OLD.content
       OR NEW.platform IS DISTINCT FROM OLD.platform THEN
        PERFORM social_queue_check_content(NEW.platform, NEW.content);
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

-- AFTER INSERT OR UPDATE: records status changes as events, tells listeners
-- on channel social_queue, and defers the publish job whenever the post
-- becomes due-able or its due time moves.
CREATE FUNCTION social_queue__after_write()
    RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
DECLARE
    v_status_changed boolean := TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status;
BEGIN
    IF v_status_changed THEN
        INSERT INTO social_queue_events (post_id, action, actor, from_status, to_status, detail)
        VALUES (
            NEW.id,
            coalesce(nullif(current_setting('social_queue.action', true), ''),
                     lower(TG_OP)),
            social_queue__actor(),
            CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END,
            NEW.status,
            CASE WHEN NEW.status IN ('retrying', 'failed') THEN
                jsonb_build_object('error_kind', NEW.error_kind, 'error', NEW.last_error,
                                   'attempt', NEW.attempts)
            END
        );
    END IF;

    IF v_status_changed
       OR NEW.scheduled_at IS DISTINCT FROM OLD.scheduled_at
       OR NEW.next_attempt_at IS DISTINCT FROM OLD.next_attempt_at
       OR NEW.content IS DISTINCT FROM OLD.content THEN
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

CREATE TRIGGER social_queue_before_write
    BEFORE INSERT OR UPDATE ON social_queue
    FOR EACH ROW EXECUTE FUNCTION social_queue__before_write();

CREATE TRIGGER social_queue_after_write
    AFTER INSERT OR UPDATE ON social_queue
    FOR EACH ROW EXECUTE FUNCTION social_queue__after_write();

-- Loads one post for a state change, locked; raises SQ404 if it is missing.
CREATE FUNCTION social_queue__lock(p_id uuid, p_action text)
    RETURNS social_queue
    LANGUAGE plpgsql
AS $$
DECLARE
    v_post social_queue;
BEGIN
    SELECT * INTO v_post FROM social_queue WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM social_queue__not_found(p_id, p_action);
    END IF;
    RETURN v_post;
END;
$$;
