-- only while empty: samples
-- samples.instruction and samples.answer are stored uncompressed (DuckDB's USING COMPRESSION), as
-- messages and search_text are since 0008.
--
-- DuckDB 2.0's default string compression analyses every segment (DICT_FSST and the others) before
-- it writes it, and on real answers it kept many segments uncompressed anyway. For the fast import
-- of 300k real-length bilingual rows (benches/dedup_data.py, 2-core VM, same minute) the INSERT and
-- its commit took 8.3 s with both compressed and 5.9 s uncompressed; the workspace file grew from
-- 1,177 to 1,321 MB (+12%). Reads get faster: nothing has to be decompressed (dedup, quality and
-- the export read these two columns whole). Numbers: benches/results/io.md.
--
-- Only new workspaces get this (the first line), for 0008's reason: rewriting every row of a
-- large workspace when it opens can run out of DuckDB's memory limit. In a new workspace the two
-- columns come after search_text.
ALTER TABLE samples ADD COLUMN instruction_uncompressed TEXT USING COMPRESSION uncompressed;
UPDATE samples SET instruction_uncompressed = instruction;
ALTER TABLE samples DROP COLUMN instruction;
ALTER TABLE samples RENAME COLUMN instruction_uncompressed TO instruction;
ALTER TABLE samples ADD COLUMN answer_uncompressed TEXT USING COMPRESSION uncompressed;
UPDATE samples SET answer_uncompressed = answer;
ALTER TABLE samples DROP COLUMN answer;
ALTER TABLE samples RENAME COLUMN answer_uncompressed TO answer;
