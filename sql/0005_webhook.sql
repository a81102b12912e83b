-- The webhook's side: a record of every delivery answered, so that a
-- redelivered or replayed event gets the same answer and changes nothing, and
-- iCadence's schedule.updated as one function, like cancel_scheduled.

-- One row per webhook event processed. The row is inserted first, in the
-- transaction that applies the event, so a concurrent delivery of the same
-- event waits on the primary key until that transaction ends, and then finds
-- the answer instead of applying the event a second time.
CREATE TABLE social_queue_webhook_events (
    source text NOT NULL,
    event_id text NOT NULL,
    event_type text NOT NULL,
    -- sha256 of the raw body: the same event id with another body is refused.
    body_sha256 text NOT NULL,
    response_status integer,
    response jsonb,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id),
    CONSTRAINT social_queue_webhook_events_answered
        CHECK ((response_status IS NULL) = (response IS NULL))
);
-- For pruning old receipts by age.
CREATE INDEX social_queue_webhook_events_received_idx
    ON social_queue_webhook_events (received_at);

-- Records that event p_event_id from p_source is being processed, or returns
-- the answer already given to it: no row when the caller must process it,
-- else one row with the stored answer and the stored body hash. Blocks while
-- another transaction processes the same event.
CREATE FUNCTION social_queue_webhook_receive(p_source text, p_event_id text,
                                             p_event_type text, p_body_sha256 text)
    RETURNS TABLE (body_sha256 text, response_status integer, response jsonb)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
BEGIN
    IF p_source IS NULL OR p_event_id IS NULL OR p_event_id = '' THEN
        PERFORM social_queue__invalid('a webhook event needs a source and an id');
    END IF;
    INSERT INTO social_queue_webhook_events (source, event_id, event_type, body_sha256)
    VALUES (p_source, p_event_id, coalesce(p_event_type, ''), p_body_sha256)
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT e.body_sha256, e.response_status, e.response
      FROM social_queue_webhook_events e
     WHERE e.source = p_source AND e.event_id = p_event_id;
END;
$$;

COMMENT ON FUNCTION social_queue_webhook_receive(text, text, text, text) IS
'Starts processing webhook event p_event_id of p_source: returns no row when '
'it is new (the receipt is written in the caller''s transaction), or the '
'stored body hash and answer when it was processed before. A concurrent '
'delivery of the same event waits until the first one commits or rolls back.';

CREATE FUNCTION social_queue_webhook_answer(p_source text, p_event_id text,
                                            p_status integer, p_response jsonb)
    RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
BEGIN
    UPDATE social_queue_webhook_events
       SET response_status = p_status, response = p_response
     WHERE source = p_source AND event_id = p_event_id;
    IF NOT FOUND THEN
        PERFORM social_queue__invalid(format(
            'webhook event %s of %s was not received first', p_event_id, p_source));
    END IF;
END;
$$;

COMMENT ON FUNCTION social_queue_webhook_answer(text, text, integer, jsonb) IS
'Stores the answer given to a webhook event received in this transaction, '
'so that a redelivery gets the same answer.';

CREATE FUNCTION social_queue_webhook_prune(p_older_than interval DEFAULT '30 days')
    RETURNS bigint
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path FROM CURRENT
AS $$
    WITH gone AS (
        DELETE FROM social_queue_webhook_events
         WHERE received_at < now() - p_older_than
        RETURNING 1
    )
    SELECT count(*) FROM gone;
$$;

COMMENT ON FUNCTION social_queue_webhook_prune(interval) IS
'Deletes webhook receipts older than p_older_than and returns how many. A '
'delivery of a pruned event would be processed again, so keep them longer '
'than iCadence retries (its signatures also expire after 5 minutes).';

-- Reschedules every post not yet published that iCadence knows as one
-- schedule: by source_ref when given, else by (profile_id, scheduled_at).
CREATE FUNCTION social_queue_reschedule_scheduled(p_profile_id text,
                                                  p_scheduled_at timestamptz,
                                                  p_source_ref text,
                                                  p_new_scheduled_at timestamptz,
                                                  p_new_content jsonb DEFAULT NULL,
                                                  p_actor text DEFAULT NULL)
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
        SELECT q.id FROM social_queue q
         WHERE CASE WHEN p_source_ref IS NOT NULL THEN q.source_ref = p_source_ref
                    ELSE q.profile_id = p_profile_id AND q.scheduled_at = p_scheduled_at
               END
         ORDER BY q.id
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

COMMENT ON FUNCTION social_queue_reschedule_scheduled(text, timestamptz, text, timestamptz, jsonb, text) IS
'Applies social_queue_reschedule to every post whose source_ref is p_source_ref '
'(or, without one, of p_profile_id scheduled at p_scheduled_at): iCadence''s '
'schedule.updated. One row per post with its status, whether it changed and '
'why not; posts already published or being published are left alone. New '
'content is checked as at enqueue (SQ422, nothing changes).';

-- Same rules as 0004: not for PUBLIC, granted to social_queue_caller.
REVOKE EXECUTE ON FUNCTION
    social_queue_webhook_receive(text, text, text, text),
    social_queue_webhook_answer(text, text, integer, jsonb),
    social_queue_webhook_prune(interval),
    social_queue_reschedule_scheduled(text, timestamptz, text, timestamptz, jsonb, text)
FROM PUBLIC;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'social_queue_caller') THEN
        GRANT SELECT ON social_queue_webhook_events TO social_queue_caller;
        GRANT EXECUTE ON FUNCTION
            social_queue_webhook_receive(text, text, text, text),
            social_queue_webhook_answer(text, text, integer, jsonb),
            social_queue_webhook_prune(interval),
            social_queue_reschedule_scheduled(text, timestamptz, text, timestamptz,
                                              jsonb, text)
        TO social_queue_caller;
    END IF;
END;
$$;
