-- only while empty: samples
-- samples.messages and samples.search_text are stored uncompressed (DuckDB's USING COMPRESSION).
--
-- Both repeat text the row holds already (the turns as JSON; the lowered turns for search), and
-- DuckDB's default compression of strings (2.0: it analyses DICT_FSST and the others for every
-- segment, and keeps half of them uncompressed anyway on real answers) made writing them most of
-- an import's time. 300k real-length bilingual rows (benches/io_speed.py data), the fast import's
-- one INSERT on a loaded 2-core VM, same run: 13.6-14.1 s with both compressed, 8.8-9.1 s with
-- both uncompressed; a search (contains over search_text) 0.18 s instead of 0.26 s, reading every
-- messages value 0.06 s instead of 0.15 s (the export reads them). The cost is disk: the
-- workspace file 1,122 MB instead of 817 MB. Forcing ZSTD instead wrote a smaller file but as
-- slowly, and read 2.5x slower.
--
-- Only new workspaces get this (the first line above): in a workspace that holds samples, every
-- row would be rewritten, which at 10M samples ran out of DuckDB's memory limit while the
-- workspace opened. Such a workspace keeps its layout, which works the same. In a new one the two
-- columns are the last two.
ALTER TABLE samples ADD COLUMN messages_uncompressed JSON USING COMPRESSION uncompressed;
UPDATE samples SET messages_uncompressed = messages;
ALTER TABLE samples DROP COLUMN messages;
ALTER TABLE samples RENAME COLUMN messages_uncompressed TO messages;
ALTER TABLE samples ADD COLUMN search_text_uncompressed TEXT USING COMPRESSION uncompressed;
UPDATE samples SET search_text_uncompressed = search_text;
ALTER TABLE samples DROP COLUMN search_text;
ALTER TABLE samples RENAME COLUMN search_text_uncompressed TO search_text;
