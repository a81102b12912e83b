-- Descriptions for the functions 0002 and 0003 left without one, so that
-- \df+ documents every function, internals included (their names carry a
-- double underscore: not part of the API).

COMMENT ON FUNCTION social_queue_check_content(text, jsonb) IS
'Raises SQ422 with the reason if p_content could never be queued for '
'p_platform (unknown platform, unknown field, empty, text over the limit with '
'URLs counted as the platform counts them, media missing or too many); '
'returns nothing otherwise.';

COMMENT ON FUNCTION social_queue_backoff(integer, timestamptz) IS
'The time of the next attempt after p_budget_used spent attempts: '
'backoff_base * 2^(n-1), capped at backoff_cap, lowered at random by up to '
'backoff_jitter of itself, and never before p_retry_at.';

COMMENT ON FUNCTION social_queue__illegal(uuid, social_status, text, text) IS
'Internal. Raises SQ409 naming the post, its status, the action and the '
'statuses the action needs, with the same facts as JSON in DETAIL.';
COMMENT ON FUNCTION social_queue__not_found(uuid, text) IS
'Internal. Raises SQ404 naming the post and the action.';
COMMENT ON FUNCTION social_queue__invalid(text) IS
'Internal. Raises SQ422 with p_message.';
COMMENT ON FUNCTION social_queue__act(text, text) IS
'Internal. Sets the action and actor that the status trigger records in the '
'event of the next change (transaction-local); NULLs clear them.';
COMMENT ON FUNCTION social_queue__actor() IS
'Internal. The current actor: the one set by social_queue__act, else '
'sql:<session user>.';
COMMENT ON FUNCTION social_queue__require_platform(text) IS
'Internal. Returns the platform''s row; raises SQ422 naming the known '
'platforms when there is none.';
COMMENT ON FUNCTION social_queue__defer_publish(uuid, timestamptz) IS
'Internal. Makes sure one procrastinate publish_post job runs for the post at '
'p_at: moves its waiting job, or defers one through procrastinate_defer_jobs_v1 '
'with queueing_lock = the post id.';
COMMENT ON FUNCTION social_queue__before_write() IS
'Internal trigger, BEFORE INSERT OR UPDATE on social_queue: checks content, '
'keeps next_attempt_at and the claim consistent with the status, stamps '
'updated_at. Makes a plain INSERT a complete enqueue.';
COMMENT ON FUNCTION social_queue__after_write() IS
'Internal trigger, AFTER INSERT OR UPDATE on social_queue: records status '
'changes in social_queue_events, notifies channel social_queue, and defers '
'the publish job when the post becomes due-able or its due time moves.';
COMMENT ON FUNCTION social_queue__lock(uuid, text) IS
'Internal. Locks and returns the post; raises SQ404 when it does not exist.';
COMMENT ON FUNCTION social_queue__claim_row(social_queue, text) IS
'Internal. Claims a locked waiting post if it may be published now '
'(queued|retrying -> posting, attempt row opened) and returns it; returns '
'NULL otherwise, moving a post held by its account''s rate limit to the time '
'the limit ends.';
COMMENT ON FUNCTION social_queue__lock_claim(uuid, integer, text) IS
'Internal. Locks the post for a worker''s report on attempt p_attempt; raises '
'SQ409 when the post is not posting or another attempt holds it.';
COMMENT ON FUNCTION social_queue__operate(social_queue, text, text) IS
'Internal. Pause, resume, retry or cancel one locked post; raises SQ409 for a '
'status the action does not allow.';
COMMENT ON FUNCTION social_queue__operate_many(uuid[], text, text) IS
'Internal. social_queue__operate for many posts: one row per distinct id with '
'its status, whether it changed, and why not.';
COMMENT ON FUNCTION social_queue__wake(text, text, text) IS
'Internal. Makes the overdue waiting posts of a platform (or of one profile '
'on it) due now, which re-defers their jobs after a pause.';
