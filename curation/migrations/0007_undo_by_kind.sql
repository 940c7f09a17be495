-- Undo by kind: curation.review.undo_handlers maps an operation's kind to the function that
-- reverts it, in code. Operations recorded before named that code in their `details`: an
-- `undo_handler` string ("curation.dedup:undo_operation", imported by name) or an `undo` recipe
-- (augment:lineage's {"clear_sample_columns": ["duplicate_of"]}). Neither is read any more; this
-- drops both, so no stored row names code to run. Every other key stays as it was.
UPDATE operations SET details = json_merge_patch(details, '{"undo_handler": null}')
WHERE json_exists(details, '$.undo_handler');
UPDATE operations SET details = json_merge_patch(details, '{"undo": null}')
WHERE json_type(details, '$.undo') = 'OBJECT';
