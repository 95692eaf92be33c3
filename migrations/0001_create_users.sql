-- Create the users table: learners, tutors and admins of the quiz tutor.
CREATE TABLE users (
    id            uuid        NOT NULL DEFAULT gen_random_uuid(),
    email         text        NOT NULL,
    display_name  text        NOT NULL,
    role          varchar(20) NOT NULL DEFAULT 'student',
    is_active     boolean     NOT NULL DEFAULT true,
    last_login_at timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_email_format_check CHECK (position('@' IN email) > 1),
    CONSTRAINT users_display_name_check CHECK (length(btrim(display_name)) > 0),
    CONSTRAINT users_role_check CHECK (role IN ('student', 'tutor', 'admin'))
);

-- Emails are unique regardless of case; the index also serves login lookups.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
CREATE INDEX users_created_at_idx ON users (created_at);
