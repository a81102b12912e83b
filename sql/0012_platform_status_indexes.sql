-- /api/integrations/status shows each platform's last success and last
-- error. Both were read from the whole history: max(posted_at) over every
-- posted post, and the newest failed attempt found by joining every failed
-- attempt to its post for the platform. At a million posts that was 150 ms
-- and 300 ms per request. An attempt now carries its post's platform (set
-- on insert; a post's platform never changes), and two partial indexes
-- answer each platform's newest success and failure with one index probe.

ALTER TABLE social_queue_attempts ADD COLUMN platform text;
UPDATE social_queue_attempts a SET platform = q.platform
  FROM social_queue q
 WHERE q.id = a.post_id;
ALTER TABLE social_queue_attempts ALTER COLUMN platform SET NOT NULL;

CREATE FUNCTION social_queue__attempt_platform()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    SELECT q.platform INTO NEW.platform FROM social_queue q WHERE q.id = NEW.post_id;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION social_queue__attempt_platform() IS
'Internal trigger: copies the post''s platform onto a new attempt, so the '
'newest failure of a platform is one index probe.';

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION social_queue__attempt_platform() '
                   'SET search_path = %I, pg_temp', current_schema());
END;
$$;
REVOKE EXECUTE ON FUNCTION social_queue__attempt_platform() FROM PUBLIC;

CREATE TRIGGER social_queue_attempts_platform
    BEFORE INSERT ON social_queue_attempts
    FOR EACH ROW EXECUTE FUNCTION social_queue__attempt_platform();

CREATE INDEX social_queue_posted_idx ON social_queue (platform, posted_at DESC)
    WHERE status = 'posted';
CREATE INDEX social_queue_attempts_failed_idx
    ON social_queue_attempts (platform, finished_at DESC, id DESC)
    WHERE outcome IN ('failed', 'lease_expired');
