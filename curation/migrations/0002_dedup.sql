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

-- MinHash signatures kept for incremental checks of later samples.
CREATE TABLE minhash_signatures (
    sample_id BIGINT NOT NULL,
    params TEXT NOT NULL,             -- fields, permutations, shingle size, seed: a key
    signature BLOB NOT NULL
);
