-- One row per organization and tracking project: the reservation of the organization's
-- tracking issue, so that replicas never open two. The executor reserves the row (in a
-- statement that also checks it still holds the organization's `key_locks` lease and token)
-- before it creates the issue, and records the issue's iid once GitLab answered. A row
-- without an iid is a creation that did not finish: its holder crashed, lost its lock, or is
-- still waiting for GitLab's answer. The next holder waits until such a creation can no
-- longer land (`settles_at`), then looks for the issue by its hidden marker and records it,
-- and creates one only when there is none.
CREATE TABLE tracking_reservations (
    org         TEXT   NOT NULL,
    project     TEXT   NOT NULL,
    -- The tracking issue, once known.
    iid         BIGINT,
    -- Who reserved it (the key lock's owner and token) and when (bot clock, unix ms).
    reserved_by TEXT   NOT NULL,
    reserved_at BIGINT NOT NULL,
    -- Until when a creation under the reservation may still reach GitLab (unix ms): a minute
    -- after the reservation, or at once when GitLab answered the creation with an error.
    settles_at  BIGINT NOT NULL,
    PRIMARY KEY (org, project)
);
