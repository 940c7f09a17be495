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
