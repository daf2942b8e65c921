-- Where `cocreate recover` left off, per webhook (`groups/50/hooks/7`): the newest GitLab
-- hook-event id it has stored into this queue. Kept with the queue it fills (the SQLite queue
-- keeps the same table in its file), so a recover run on any machine continues from the last.
CREATE TABLE recover_cursor (
    hook          TEXT   PRIMARY KEY,
    last_event_id BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
