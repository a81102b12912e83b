-- Text search in the ops page and the JSON API (`content->>'text' ILIKE
-- '%…%'`) reads every row without an index: about a second and a half at a
-- million posts. A trigram index answers it from the index, but it needs the
-- pg_trgm extension, which managed servers (Heroku, RDS, Cloud SQL) and
-- Debian's packages ship and the embedded PostgreSQL does not. Where it is
-- missing, the search still works, by scanning, and this notice says why.
-- Installing pg_trgm later and running the same statements creates the index.

DO $$
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
    EXCEPTION
        WHEN undefined_file OR insufficient_privilege OR feature_not_supported THEN
            RAISE NOTICE 'pg_trgm is not available (%): text search scans the table',
                SQLERRM;
            RETURN;
    END;
    -- The expression is the one the search filters on, so the planner can
    -- use the index for it; GIN's pending list keeps inserts cheap.
    CREATE INDEX IF NOT EXISTS social_queue_text_trgm_idx
        ON social_queue USING gin ((content->>'text') gin_trgm_ops);
END;
$$;
