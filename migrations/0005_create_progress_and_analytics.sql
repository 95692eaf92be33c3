-- Create progress_records (per-user mastery of each topic) and quiz_analytics (per-answer events).
CREATE TABLE progress_records (
    id                uuid         NOT NULL DEFAULT gen_random_uuid(),
    user_id           uuid         NOT NULL,
    tree_node_id      uuid         NOT NULL,
    last_session_id   uuid,
    sessions_count    integer      NOT NULL DEFAULT 0,
    questions_answered integer     NOT NULL DEFAULT 0,
    correct_answers   integer      NOT NULL DEFAULT 0,
    mastery_level     numeric(5,2) NOT NULL DEFAULT 0,
    streak            integer      NOT NULL DEFAULT 0,
    last_practiced_at timestamptz,
    created_at        timestamptz  NOT NULL DEFAULT now(),
    updated_at        timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT progress_records_pkey PRIMARY KEY (id),
    CONSTRAINT progress_records_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT progress_records_tree_node_id_fkey FOREIGN KEY (tree_node_id)
        REFERENCES tree_nodes (id) ON DELETE CASCADE,
    CONSTRAINT progress_records_last_session_id_fkey FOREIGN KEY (last_session_id)
        REFERENCES quiz_sessions (id) ON DELETE SET NULL,
    CONSTRAINT progress_records_user_id_tree_node_id_key UNIQUE (user_id, tree_node_id),
    CONSTRAINT progress_records_counts_check
        CHECK (sessions_count >= 0
               AND questions_answered >= 0
               AND correct_answers BETWEEN 0 AND questions_answered
               AND streak >= 0),
    CONSTRAINT progress_records_mastery_level_check CHECK (mastery_level BETWEEN 0 AND 100)
);

-- (user_id, tree_node_id) is covered by the unique constraint's index.
CREATE INDEX progress_records_tree_node_id_idx ON progress_records (tree_node_id);
CREATE INDEX progress_records_last_session_id_idx ON progress_records (last_session_id);
-- "What should this user practise next": weakest topics first.
CREATE INDEX progress_records_user_id_mastery_level_idx
    ON progress_records (user_id, mastery_level);

CREATE TABLE quiz_analytics (
    id               uuid        NOT NULL DEFAULT gen_random_uuid(),
    quiz_session_id  uuid        NOT NULL,
    user_id          uuid        NOT NULL,
    tree_node_id     uuid        NOT NULL,
    question_number  integer     NOT NULL,
    question_ref     text        NOT NULL,
    is_correct       boolean     NOT NULL,
    response_time_ms integer     NOT NULL DEFAULT 0,
    hints_used       integer     NOT NULL DEFAULT 0,
    attempts         integer     NOT NULL DEFAULT 1,
    answered_at      timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT quiz_analytics_pkey PRIMARY KEY (id),
    CONSTRAINT quiz_analytics_quiz_session_id_fkey FOREIGN KEY (quiz_session_id)
        REFERENCES quiz_sessions (id) ON DELETE CASCADE,
    CONSTRAINT quiz_analytics_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT quiz_analytics_tree_node_id_fkey FOREIGN KEY (tree_node_id)
        REFERENCES tree_nodes (id) ON DELETE CASCADE,
    CONSTRAINT quiz_analytics_session_question_key UNIQUE (quiz_session_id, question_number),
    CONSTRAINT quiz_analytics_question_number_check CHECK (question_number > 0),
    CONSTRAINT quiz_analytics_counts_check
        CHECK (response_time_ms >= 0 AND hints_used >= 0 AND attempts >= 1)
);

-- (quiz_session_id, ...) is covered by the unique constraint's index.
CREATE INDEX quiz_analytics_user_id_answered_at_idx ON quiz_analytics (user_id, answered_at DESC);
CREATE INDEX quiz_analytics_tree_node_id_idx ON quiz_analytics (tree_node_id);
