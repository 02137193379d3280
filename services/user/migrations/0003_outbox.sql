-- Events waiting to be published (UserRegistered), written in the same transaction as the change
-- they report; the outbox relay publishes them and sets sent_at. See bridge/src/outbox.rs.
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
