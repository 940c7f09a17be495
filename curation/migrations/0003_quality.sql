-- Quality flags: one row per (sample, rule) that fired, with the measured value and threshold.
-- Flags only mark; a person or a bulk action decides.
CREATE TABLE quality_flags (
    sample_id BIGINT NOT NULL,
    rule_id TEXT NOT NULL,
    value DOUBLE,
    threshold DOUBLE,
    detail TEXT,
    op_id BIGINT
);

-- The measured value of every checked sample for every numeric rule, flagged or not, so the
-- studio can show how many samples another threshold would flag (curation.quality.preview) and
-- draw the histogram without re-reading the text.
CREATE TABLE quality_values (
    sample_id BIGINT NOT NULL,
    rule_id TEXT NOT NULL,
    value DOUBLE,
    op_id BIGINT
);

-- Flags and values a quality run replaced, so undo can put them back.
CREATE TABLE quality_undo (
    op_id BIGINT NOT NULL,
    sample_id BIGINT NOT NULL,
    rule_id TEXT NOT NULL,
    value DOUBLE,
    threshold DOUBLE,
    detail TEXT,
    flag_op_id BIGINT,
    is_flag BOOLEAN NOT NULL
);
