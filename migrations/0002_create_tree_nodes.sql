-- Create tree_nodes: the topic tree (subjects, topics, subtopics) quizzes are drawn from.
CREATE TABLE tree_nodes (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    parent_id   uuid,
    title       text        NOT NULL,
    slug        varchar(100) NOT NULL,
    description text,
    node_type   varchar(20) NOT NULL DEFAULT 'topic',
    depth       integer     NOT NULL DEFAULT 0,
    sort_order  integer     NOT NULL DEFAULT 0,
    created_by  uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tree_nodes_pkey PRIMARY KEY (id),
    CONSTRAINT tree_nodes_parent_id_fkey FOREIGN KEY (parent_id)
        REFERENCES tree_nodes (id) ON DELETE CASCADE,
    CONSTRAINT tree_nodes_created_by_fkey FOREIGN KEY (created_by)
        REFERENCES users (id) ON DELETE SET NULL,
    CONSTRAINT tree_nodes_not_own_parent_check CHECK (parent_id IS NULL OR parent_id <> id),
    CONSTRAINT tree_nodes_title_check CHECK (length(btrim(title)) > 0),
    CONSTRAINT tree_nodes_slug_check CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    CONSTRAINT tree_nodes_node_type_check CHECK (node_type IN ('subject', 'topic', 'subtopic')),
    CONSTRAINT tree_nodes_depth_check CHECK (depth >= 0),
    CONSTRAINT tree_nodes_root_depth_check CHECK ((parent_id IS NULL) = (depth = 0))
);

-- Children of a node, in display order.
CREATE INDEX tree_nodes_parent_id_sort_order_idx ON tree_nodes (parent_id, sort_order);
CREATE INDEX tree_nodes_created_by_idx ON tree_nodes (created_by);
-- Slugs are unique among siblings; roots (parent_id IS NULL) need their own index.
CREATE UNIQUE INDEX tree_nodes_parent_id_slug_key ON tree_nodes (parent_id, slug)
    WHERE parent_id IS NOT NULL;
CREATE UNIQUE INDEX tree_nodes_root_slug_key ON tree_nodes (slug)
    WHERE parent_id IS NULL;
