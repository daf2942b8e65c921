-- One row per organization (or other key) whose work replicas serialize: the handler holds the
-- row's lease while it reads GitLab, decides and writes (so two replicas never both find no
-- tracking issue and open two), renews it meanwhile, and gives it back when done. A replica
-- that dies lets the lease expire; the next holder reads GitLab again (an issue created just
-- before the crash is found there, by its organization label, before another is opened).
-- No session advisory lock is held across GitLab calls.
CREATE TABLE key_locks (
    key          TEXT   PRIMARY KEY,
    owner        TEXT   NOT NULL,
    token        BIGINT NOT NULL,
    locked_until BIGINT NOT NULL
);
