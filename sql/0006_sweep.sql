-- The sweeper: a safety net for lost wake-ups. A waiting post normally has
-- one procrastinate job scheduled at its next attempt; a worker that died
-- after fetching that job but before claiming the post leaves it with none.

CREATE FUNCTION social_queue_sweep(p_grace interval DEFAULT '1 minute', p_limit integer DEFAULT 1000)
    RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
DECLARE
    v_id uuid;
    v_count integer := 0;
BEGIN
    FOR v_id IN
        SELECT q.id FROM social_queue q
         WHERE q.status IN ('queued', 'retrying')
           AND q.next_attempt_at < now() - p_grace
           AND NOT EXISTS (SELECT FROM procrastinate_jobs j
                            WHERE j.queueing_lock = q.id::text AND j.status = 'todo')
           AND NOT EXISTS (SELECT FROM social_platforms p
                            WHERE p.platform = q.platform AND p.paused)
           AND NOT EXISTS (SELECT FROM social_accounts a
                            WHERE a.profile_id = q.profile_id AND a.platform = q.platform
                              AND (a.paused OR a.rate_limited_until > now()))
         ORDER BY q.next_attempt_at
         LIMIT p_limit
           FOR UPDATE OF q SKIP LOCKED
    LOOP
        PERFORM social_queue__defer_publish(v_id, now());
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END;
$$;

COMMENT ON FUNCTION social_queue_sweep(interval, integer) IS
'Defers a publish job, due now, for up to p_limit waiting posts that have been '
'due for longer than p_grace without one (their worker died between fetching '
'the job and claiming the post). Returns how many it deferred. Run by the '
'worker every minute.';

REVOKE EXECUTE ON FUNCTION social_queue_sweep(interval, integer) FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'social_queue_caller') THEN
        GRANT EXECUTE ON FUNCTION social_queue_sweep(interval, integer) TO social_queue_caller;
    END IF;
END;
$$;
