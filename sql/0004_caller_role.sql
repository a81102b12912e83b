-- The role other systems use: it may read the queue and call the API
-- functions, and nothing else. Roles belong to the whole server, so it may
-- exist already; on hosts that forbid CREATE ROLE (Heroku Postgres) the
-- grants are skipped with a notice and the functions still work for the
-- application's own role.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'social_queue_caller') THEN
        CREATE ROLE social_queue_caller NOLOGIN;
    END IF;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'social_queue_caller not created: %', SQLERRM;
    WHEN duplicate_object OR unique_violation THEN
        NULL;  -- created meanwhile by a migration of another database
END;
$$;

-- Internal functions are not for anyone else; PostgreSQL lets PUBLIC execute
-- every new function unless told otherwise.
DO $$
DECLARE
    v_function regprocedure;
BEGIN
    FOR v_function IN
        SELECT p.oid::regprocedure FROM pg_proc p
         WHERE p.pronamespace = current_schema()::regnamespace
           AND (p.proname LIKE 'social\_queue\_\_%' OR p.proname LIKE 'social\_%')
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', v_function);
    END LOOP;

    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'social_queue_caller') THEN
        RETURN;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO social_queue_caller', current_schema());
    GRANT SELECT ON social_queue, social_queue_attempts, social_queue_events,
                    social_platforms, social_queue_settings
       TO social_queue_caller;
    FOR v_function IN
        SELECT p.oid::regprocedure FROM pg_proc p
         WHERE p.pronamespace = current_schema()::regnamespace
           AND p.proname LIKE 'social\_%' AND p.proname NOT LIKE '%\_\_%'
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO social_queue_caller', v_function);
    END LOOP;
END;
$$;
