-- Tool use (import of glaive / LLaMA-Factory / OpenAI tool rows, curation.importers.turns).
--
-- `tools`: the function schemas a tool-use sample offers the model, as OpenAI writes them
-- ([{"type": "function", "function": {"name", "description", "parameters"}}]); NULL for every
-- sample without tools. The turns themselves need no new column: `messages` holds them in
-- OpenAI's shape (an assistant turn's `tool_calls`, `tool` turns with `tool_call_id`, a turn's
-- `weight` 0 when it is kept but not trained), and a plain turn stays {"role", "content"}.
-- The importer sets it after landing the rows (curation.importers.core); edits do not change it.
ALTER TABLE samples ADD COLUMN tools JSON;
