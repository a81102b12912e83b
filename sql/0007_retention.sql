-- Retention: posts that are done (posted, cancelled) leave the hot table
-- after a configurable age, with their attempts and events (ON DELETE
-- CASCADE), together with finished procrastinate jobs and old webhook
-- receipts. The claim path and the ops list never read old finished rows
-- through a scan, but every index, vacuum and backup carries them, so they
-- are removed in small batches on a schedule (the worker's `prune` task).

ALTER TABLE social_queue_settings
    ADD COLUMN retention interval NOT NULL DEFAULT '90 days',
    -- Receipts must outlive iCadence's redeliveries (see
    -- social_queue_webhook_prune), which a day covers many times over.
    ADD CONSTRAINT social_queue_settings_retention_sensible
        CHECK (retention >= '1 day'::interval);

-- What the pruner reads: finished posts by the time of their last change.
-- Partial, so waiting and failed posts (the ones operators act on) do not
-- pay for it.
CREATE INDEX social_queue_finished_idx ON social_queue (updated_at)
    WHERE status IN ('posted', 'cancelled');

-- Recent attempts by time, for /metrics (attempts, outcomes and latency over
-- a short window) without scanning the whole history.
CREATE INDEX social_queue_attempts_finished_idx ON social_queue_attempts (finished_at)
    WHERE finished_at IS NOT NULL;

-- Deletes up to p_limit posted or cancelled posts whose last change
-- (updated_at) is older than p_older_than (default: the retention setting),
-- their attempts and events with them; up to p_limit procrastinate jobs that
-- ended (succeeded, failed, cancelled, aborted) longer ago than that; and
-- webhook receipts older than that. Locked rows are skipped, so it never
-- waits on a worker or an operator. Returns how many of each it deleted;
-- call it again while posts or jobs come back equal to p_limit. Raises SQ422
-- for a negative age or a limit below 1.
CREATE FUNCTION social_queue_prune(p_older_than interval DEFAULT NULL,
                                   p_limit integer DEFAULT 1000)
    RETURNS TABLE (posts bigint, jobs bigint, webhook_events bigint)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
DECLARE
    v_age interval := coalesce(p_older_than,
                               (SELECT retention FROM social_queue_settings));
    v_cutoff timestamptz;
BEGIN
    IF v_age < '0'::interval THEN
        PERFORM social_queue__invalid(format('the age to prune must not be negative, not %s', v_age));
    END IF;
    IF p_limit IS NULL OR p_limit < 1 THEN
        PERFORM social_queue__invalid('the prune limit must be at least 1');
    END IF;
    v_cutoff := now() - v_age;

    WITH doomed AS (
        SELECT q.id FROM social_queue q
         WHERE q.status IN ('posted', 'cancelled') AND q.updated_at < v_cutoff
         ORDER BY q.updated_at
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM social_queue q USING doomed WHERE q.id = doomed.id RETURNING 1
    )
    SELECT count(*) INTO posts FROM gone;

    -- procrastinate_jobs has no timestamp of its own: a job ended when its
    -- last event was written. The latest periodic defer of each task still
    -- points at its job, which procrastinate needs to keep.
    WITH doomed AS (
        SELECT j.id FROM procrastinate_jobs j
         WHERE j.status IN ('succeeded', 'failed', 'cancelled', 'aborted')
           AND NOT EXISTS (SELECT FROM procrastinate_events e
                            WHERE e.job_id = j.id AND e.at >= v_cutoff)
           AND NOT EXISTS (SELECT FROM procrastinate_periodic_defers d
                            WHERE d.job_id = j.id)
         LIMIT p_limit
           FOR UPDATE OF j SKIP LOCKED
    ), gone AS (
        DELETE FROM procrastinate_jobs j USING doomed WHERE j.id = doomed.id RETURNING 1
    )
    SELECT count(*) INTO jobs FROM gone;

    -- Receipts are small and indexed by received_at; 0005's function deletes
    -- them in one statement, which at hourly runs is one hour's worth.
    webhook_events := social_queue_webhook_prune(greatest(v_age, '1 day'::interval));
    RETURN NEXT;
END;
$$;

COMMENT ON FUNCTION social_queue_prune(interval, integer) IS
'Deletes up to p_limit posted or cancelled posts whose last change is older '
'than p_older_than (default: social_queue_settings.retention), with their '
'attempts and events; up to p_limit finished procrastinate jobs that ended '
'before then; and webhook receipts older than then (at least a day). Skips '
'locked rows. Returns (posts, jobs, webhook_events) deleted; call again while '
'posts or jobs equal p_limit. Raises SQ422 for a negative age or a limit '
'below 1.';

-- Same rules as 0004: not for PUBLIC, granted to social_queue_caller.
REVOKE EXECUTE ON FUNCTION social_queue_prune(interval, integer) FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'social_queue_caller') THEN
        GRANT EXECUTE ON FUNCTION social_queue_prune(interval, integer)
           TO social_queue_caller;
    END IF;
END;
$$;
