-- +goose Up
-- An outbox row's events as one value: their JSON bodies, one per line, in
-- the order of event_ids (JSON never holds a raw newline). One bytea costs
-- far less to send and to store than an array of them, element by element.
-- A row stays in the table's page, uncompressed, up to 8 KB (a group commit
-- of about 15 claims); a larger one is compressed, with lz4 where the server
-- has it, which costs a fraction of pglz's CPU.
ALTER TABLE outbox ADD COLUMN body bytea;
UPDATE outbox SET body = (
    SELECT string_agg(b, '\x0a'::bytea ORDER BY i) FROM unnest(bodies) WITH ORDINALITY AS u (b, i));
ALTER TABLE outbox DROP COLUMN bodies, ALTER COLUMN body SET NOT NULL;
ALTER TABLE outbox SET (toast_tuple_target = 8160);
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE outbox ALTER COLUMN body SET COMPRESSION lz4;
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose Down
ALTER TABLE outbox ADD COLUMN bodies bytea[];
UPDATE outbox SET bodies = ARRAY(
    SELECT convert_to(b, 'UTF8') FROM unnest(string_to_array(convert_from(body, 'UTF8'), E'\n')) WITH ORDINALITY AS u (b, i) ORDER BY i);
ALTER TABLE outbox DROP COLUMN body, ALTER COLUMN bodies SET NOT NULL;
ALTER TABLE outbox RESET (toast_tuple_target);
