-- LLM augmentation: a cache of answered requests, failures, usage per job and provider, and which
-- samples each answered request produced. None of these tables ever holds an API key.

-- One row per answered request. `key` is sha256 over (base_url, model, messages, parameters,
-- template version): a rerun or a resumed job finds its answer here and sends nothing.
CREATE TABLE llm_cache (
    key TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    base_url TEXT NOT NULL,
    model TEXT NOT NULL,
    operation TEXT NOT NULL,          -- rewrite, answers, reverse, judge
    template_id TEXT NOT NULL,        -- e.g. 'en/rewrite'
    template_version TEXT NOT NULL,
    request JSON NOT NULL,            -- messages and parameters as sent (no key, no headers)
    content TEXT NOT NULL,            -- the assistant's reply
    finish_reason TEXT,
    prompt_tokens BIGINT,
    completion_tokens BIGINT,
    cost_usd DOUBLE,
    latency_s DOUBLE,
    job_id BIGINT,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- Requests that did not give a usable answer: the reason (timeout, http_429, empty, refusal,
-- unparsable, no_choices, invalid_json, ...) and the last detail. A rerun tries them again.
CREATE TABLE llm_failures (
    job_id BIGINT,
    key TEXT NOT NULL,
    sample_id BIGINT,
    reason TEXT NOT NULL,
    detail TEXT,
    attempts INTEGER NOT NULL,
    failed_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- Tokens and dollars from the servers' `usage`, per job and provider.
CREATE TABLE llm_usage (
    job_id BIGINT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    cached BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    cost_usd DOUBLE NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, provider, model)
);

-- What an augment job was asked to do (operation, resolved sample ids, parameters, provider name),
-- so `studio augment resume JOB` repeats exactly the same requests.
CREATE TABLE augment_jobs (
    job_id BIGINT PRIMARY KEY,
    operation TEXT NOT NULL,
    spec JSON NOT NULL
);

-- Which samples an answered request produced (or judged): applying an answer twice is a no-op.
CREATE TABLE augment_outputs (
    request_key TEXT NOT NULL,
    sample_id BIGINT NOT NULL,
    parent_id BIGINT,
    job_id BIGINT,
    checked BOOLEAN NOT NULL DEFAULT FALSE  -- dedup and quality checks ran on it
);
