-- Reporting view user_progress_summary: per-user topic mastery and quiz totals (idempotent).
CREATE OR REPLACE VIEW user_progress_summary AS
SELECT
    u.id                                             AS user_id,
    u.email,
    u.display_name,
    coalesce(p.topics_started, 0)                    AS topics_started,
    coalesce(p.topics_mastered, 0)                   AS topics_mastered,
    coalesce(p.avg_mastery_level, 0)::numeric(5,2)   AS avg_mastery_level,
    coalesce(s.sessions_total, 0)                    AS sessions_total,
    coalesce(s.sessions_completed, 0)                AS sessions_completed,
    s.avg_score,
    coalesce(s.questions_answered, 0)                AS questions_answered,
    coalesce(s.correct_answers, 0)                   AS correct_answers,
    greatest(p.last_practiced_at, s.last_session_at) AS last_activity_at
FROM users AS u
LEFT JOIN (
    SELECT
        pr.user_id,
        count(*)                                      AS topics_started,
        count(*) FILTER (WHERE pr.mastery_level >= 80) AS topics_mastered,
        avg(pr.mastery_level)                         AS avg_mastery_level,
        max(pr.last_practiced_at)                     AS last_practiced_at
    FROM progress_records AS pr
    GROUP BY pr.user_id
) AS p ON p.user_id = u.id
LEFT JOIN (
    SELECT
        qs.user_id,
        count(*)                                          AS sessions_total,
        count(*) FILTER (WHERE qs.status = 'completed')   AS sessions_completed,
        round(avg(qs.score) FILTER (WHERE qs.status = 'completed'), 2) AS avg_score,
        sum(qs.answered_count)                            AS questions_answered,
        sum(qs.correct_count)                             AS correct_answers,
        max(qs.started_at)                                AS last_session_at
    FROM quiz_sessions AS qs
    GROUP BY qs.user_id
) AS s ON s.user_id = u.id;
