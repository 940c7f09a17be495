-- The workspace's core: samples, their versions, the audit log of operations, imports and jobs.
-- Later features add tables in their own numbered migrations; a shipped migration never changes.
-- AT is a reserved word in DuckDB 2.0 (time travel): the `"at"` columns must be quoted in every query.

CREATE SEQUENCE sample_id_seq START 1;
CREATE SEQUENCE op_id_seq START 1;
CREATE SEQUENCE job_id_seq START 1;

-- One row per operation that changed the workspace: what, how many samples, when, why.
-- `details` holds what undo needs; `undone_by` points at the undo operation that reverted it.
CREATE TABLE operations (
    id BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    "at" TIMESTAMP NOT NULL DEFAULT current_timestamp,
    reason TEXT,
    sample_count BIGINT NOT NULL DEFAULT 0,
    details JSON,
    undone_by BIGINT
);

-- Which samples an operation touched and the status each had before and after.
CREATE TABLE op_samples (
    op_id BIGINT NOT NULL,
    sample_id BIGINT NOT NULL,
    old_status TEXT,
    new_status TEXT,
    old_version INTEGER,
    new_version INTEGER
);

CREATE TABLE imports (
    id BIGINT PRIMARY KEY,
    path TEXT NOT NULL,
    file_sha256 TEXT NOT NULL,
    format TEXT NOT NULL,
    rows BIGINT NOT NULL,
    rejected BIGINT NOT NULL DEFAULT 0,
    op_id BIGINT NOT NULL,
    "at" TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- The canonical sample. kind 'chat': optional system prompt plus user/assistant turns in
-- `messages` (a JSON list of {"role", "content"}); kind 'text': raw text for continued
-- pretraining in `text`. `instruction` and `answer` are the first user and last assistant turn,
-- kept beside the messages for search, dedup and the review list.
-- No PRIMARY KEY: ids come from a sequence, in insertion order, so DuckDB's zone maps find a row
-- by id as fast as an index would, and bulk imports skip the index maintenance.
CREATE TABLE samples (
    id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    system TEXT,
    messages JSON,
    text TEXT,
    instruction TEXT,
    answer TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    version INTEGER NOT NULL DEFAULT 1,
    lang TEXT,
    tags TEXT[],
    source_file TEXT,
    source_row BIGINT,
    source_id TEXT,
    import_id BIGINT,
    parent_id BIGINT,
    operation TEXT,
    lineage JSON,
    content_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    cluster_id BIGINT,
    duplicate_of BIGINT,
    judge_score DOUBLE,
    judge_reason TEXT
);

-- Every earlier version of an edited sample (the current one lives in `samples`).
CREATE TABLE sample_versions (
    sample_id BIGINT NOT NULL,
    version INTEGER NOT NULL,
    system TEXT,
    messages JSON,
    text TEXT,
    op_id BIGINT,
    "at" TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- Long work (import, dedup, quality, augment, export) with its progress and outcome.
CREATE TABLE jobs (
    id BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,           -- running, done, failed, cancelled
    started_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    finished_at TIMESTAMP,
    done BIGINT NOT NULL DEFAULT 0,
    total BIGINT,
    message TEXT,
    result JSON,
    pid INTEGER
);
