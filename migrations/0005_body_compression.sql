-- Webhook bodies are JSON of a few KiB, so PostgreSQL compresses them as it stores them (TOAST).
-- Its default, pglz, made that compression the group commit's largest cost (10,500 enqueues/s
-- alone on the benchmark machine; 21,300 with lz4). lz4 where the server was built with it
-- (PostgreSQL 14 and later, as Debian's and most builds are); elsewhere the default stays.
-- Only new rows are compressed the new way; old ones read as before.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        -- Dynamic, so that servers older than 14 (no such syntax) never parse it.
        EXECUTE 'ALTER TABLE events ALTER COLUMN body SET COMPRESSION lz4';
    END IF;
END
$$;
