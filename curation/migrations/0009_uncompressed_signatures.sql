-- only while empty: minhash_signatures
-- minhash_signatures.signature is stored uncompressed (DuckDB's USING COMPRESSION).
--
-- A signature is 128 uniformly random uint32 values: no compression shrinks it, and DuckDB 2.0's
-- default compression of BLOBs analyses every segment before keeping it as it is. Storing the 1M
-- signatures of a dedup run (INSERT, COMMIT, CHECKPOINT of 1M rows from Arrow, on the 2-core VM)
-- took 5.5 s with the default and 1.2 s uncompressed, the same 517 MB on disk; it was most of the
-- "writing clusters" step of `studio dedup` at 1M rows (10.5 s).
--
-- The table is a cache (a signature is valid while its sample's content_hash matches), but a
-- workspace that holds signatures keeps them and its layout (the first line above): rewriting 10M
-- of them would cost more at open than it saves.
DROP TABLE minhash_signatures;
CREATE TABLE minhash_signatures (
    sample_id BIGINT NOT NULL,
    params TEXT NOT NULL,             -- fields, permutations, shingle size, seed: a key
    content_hash TEXT,                -- samples.content_hash when the signature was computed
    exact_key BIGINT,                 -- 64-bit hash of the normalised text; 0: empty text
    shingles INTEGER,                 -- shingle count (0: nothing to compare for near duplicates)
    signature BLOB NOT NULL USING COMPRESSION uncompressed  -- num_perm little-endian uint32 values
);
