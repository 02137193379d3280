-- The outbox (bridge/src/outbox.rs) and the inbox (bridge/src/inbox.rs), applied by
-- `shop_bridge::migrator()` to every service database that publishes or consumes events, and
-- tracked apart from the service's own migrations. `if not exists`: the user service's
-- migration 0003 made the outbox before these were shared.
create table if not exists outbox (
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

create index if not exists outbox_pending_idx on outbox (id) where sent_at is null;

create table if not exists processed_events (
    event_id     uuid not null,
    consumer     text not null,
    processed_at timestamptz not null default now(),
    primary key (event_id, consumer)
);
