-- 0001_audit: one row per journaled command, event and decision of a run.
-- Applied by actors.journal.pg_sink.migrate inside a transaction under an advisory lock.
-- Names are unqualified so the migration lands in the connection's search_path.

CREATE TABLE raydesk_audit (
    run_id          text        NOT NULL,
    seq             bigint      NOT NULL CHECK (seq >= 1),
    record_id       text        NOT NULL,
    type            text        NOT NULL,
    ts_event        bigint      NOT NULL,
    ts_init         bigint      NOT NULL,
    client_order_id text        NULL,
    symbol          text        NULL,
    crc             bigint      NOT NULL CHECK (crc BETWEEN 0 AND 4294967295),
    record          jsonb       NOT NULL,
    inserted_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, seq),
    CONSTRAINT raydesk_audit_record_id_check CHECK (record_id = run_id || ':' || seq::text)
);

CREATE INDEX raydesk_audit_run_client_order_idx ON raydesk_audit (run_id, client_order_id);
