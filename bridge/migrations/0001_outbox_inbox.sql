-- The bridge's two tables, for a database of its own (tests, `shop bench events`). A service
-- puts the same definitions in its own migrations.
create table outbox (
    id           bigint generated always as identity primary key,
    topic        text not null,
    message_key  text not null,
    event_type   text not null,
    event_id     uuid not null unique,
    payload      bytea not null,
    fingerprint  text not null,
    trace_id     text,
    created_at   timestamptz not null default now(),
    sent_at      timestamptz
);

create index outbox_pending_idx on outbox (id) where sent_at is null;

create table processed_events (
    event_id     uuid not null,
    consumer     text not null,
    processed_at timestamptz not null default now(),
    primary key (event_id, consumer)
);
