-- Duplicate clusters. A cluster groups exact or near duplicates; its keeper stays, every other
-- member gets samples.duplicate_of = keeper and leaves every split. Nothing is deleted.
CREATE SEQUENCE cluster_id_seq START 1;

CREATE TABLE dup_clusters (
    id BIGINT PRIMARY KEY,
    method TEXT NOT NULL,             -- 'exact' or 'near'
    fields TEXT NOT NULL,             -- 'sample', 'instruction' or 'answer'
    keeper_id BIGINT NOT NULL,
    keeper_chosen_by TEXT NOT NULL,   -- 'policy' or 'reviewer'
    size INTEGER NOT NULL,
    op_id BIGINT,
    resolved BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE dup_members (
    cluster_id BIGINT NOT NULL,
    sample_id BIGINT NOT NULL,
    similarity DOUBLE                 -- to the keeper (1.0 for the keeper and exact duplicates)
);

-- MinHash signatures kept for incremental checks of later samples. A row is valid while the
-- sample's content_hash still matches (an edit makes it stale).
CREATE TABLE minhash_signatures (
    sample_id BIGINT NOT NULL,
    params TEXT NOT NULL,             -- fields, permutations, shingle size, seed: a key
    content_hash TEXT,                -- samples.content_hash when the signature was computed
    exact_key BIGINT,                 -- 64-bit hash of the normalised text; 0: empty text
    shingles INTEGER,                 -- shingle count (0: nothing to compare for near duplicates)
    signature BLOB NOT NULL           -- num_perm little-endian uint32 values (datasketch affine32)
);

-- What a dedup or keeper operation replaced, so undo can put it back (curation.dedup).
-- dup_undo_clusters lists every cluster the op touched: existed=TRUE rows hold the old values,
-- existed=FALSE rows name clusters the op created.
CREATE TABLE dup_undo_clusters (
    op_id BIGINT NOT NULL,
    existed BOOLEAN NOT NULL,
    id BIGINT NOT NULL,
    method TEXT,
    fields TEXT,
    keeper_id BIGINT,
    keeper_chosen_by TEXT,
    size INTEGER,
    cluster_op_id BIGINT,
    resolved BOOLEAN
);

CREATE TABLE dup_undo_members (
    op_id BIGINT NOT NULL,
    cluster_id BIGINT NOT NULL,
    sample_id BIGINT NOT NULL,
    similarity DOUBLE
);

-- samples.cluster_id / duplicate_of before the op, for every sample whose values it changed.
CREATE TABLE dup_undo_samples (
    op_id BIGINT NOT NULL,
    sample_id BIGINT NOT NULL,
    cluster_id BIGINT,
    duplicate_of BIGINT
);
