-- Create quiz_sessions: one quiz attempt by a user on a topic of the tree.
CREATE TABLE quiz_sessions (
    id              uuid         NOT NULL DEFAULT gen_random_uuid(),
    user_id         uuid         NOT NULL,
    tree_node_id    uuid         NOT NULL,
    status          varchar(20)  NOT NULL DEFAULT 'in_progress',
    question_count  integer      NOT NULL DEFAULT 0,
    answered_count  integer      NOT NULL DEFAULT 0,
    correct_count   integer      NOT NULL DEFAULT 0,
    score           numeric(5,2),
    started_at      timestamptz  NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    created_at      timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT quiz_sessions_pkey PRIMARY KEY (id),
    CONSTRAINT quiz_sessions_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT quiz_sessions_tree_node_id_fkey FOREIGN KEY (tree_node_id)
        REFERENCES tree_nodes (id) ON DELETE RESTRICT,
    CONSTRAINT quiz_sessions_status_check
        CHECK (status IN ('in_progress', 'completed', 'abandoned')),
    CONSTRAINT quiz_sessions_counts_check
        CHECK (question_count >= 0
               AND answered_count BETWEEN 0 AND question_count
               AND correct_count BETWEEN 0 AND answered_count),
    CONSTRAINT quiz_sessions_score_check CHECK (score BETWEEN 0 AND 100),
    CONSTRAINT quiz_sessions_completed_at_check
        CHECK (completed_at IS NULL OR completed_at >= started_at)
);

-- A user's sessions, newest first (history page, "resume last quiz").
CREATE INDEX quiz_sessions_user_id_started_at_idx ON quiz_sessions (user_id, started_at DESC);
CREATE INDEX quiz_sessions_tree_node_id_idx ON quiz_sessions (tree_node_id);
-- Open sessions are looked up often and are few.
CREATE INDEX quiz_sessions_in_progress_idx ON quiz_sessions (user_id)
    WHERE status = 'in_progress';
