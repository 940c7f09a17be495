-- Review at a million samples (measured in benches/results/workspace.md, 2-core CPU):
--
-- `status` becomes an ENUM. Committing a status change of 10k scattered samples took about
-- 50 ms with TEXT and about 3 ms with the ENUM (DuckDB writes string updates to the WAL per
-- touched vector). SQL is unchanged: compare and insert with the strings as before; any other
-- value is now refused ("Could not convert string 'x' to ENUM").
CREATE TYPE review_status AS ENUM ('pending', 'approved', 'rejected');
ALTER TABLE samples ALTER status TYPE review_status;

-- `search_text`: lower(instruction \n answer \n text), so a case-insensitive search is a plain
-- substring scan: contains(search_text, lower(?)) ran in about a fifth of the time of ILIKE or
-- contains(lower(col), ?) over the three columns. store.insert_arrow and review.edit keep it
-- current; a row where it is NULL (written some other way) is still searched, the slow way.
ALTER TABLE samples ADD COLUMN search_text TEXT;
UPDATE samples SET search_text = lower(concat_ws(chr(10), instruction, answer, text));
