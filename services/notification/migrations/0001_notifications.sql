-- The notification service's own copies of what it needs to address people (from UserRegistered
-- and OrderPlaced), their opt-outs, and the delivery log. A delivery is unique per (event,
-- channel): a redelivered event sends nothing twice.
create table recipients (
    user_id    uuid primary key,
    email      text not null,
    name       text not null,
    phone      text,
    updated_at timestamptz not null default now()
);

-- Payment events name the order only: its customer and amount come from OrderPlaced.
create table order_contacts (
    order_id    uuid primary key,
    customer_id uuid not null,
    total       bigint not null,
    currency    text not null,
    created_at  timestamptz not null default now()
);

create table preferences (
    user_id       uuid primary key,
    email_opt_out boolean not null default false,
    sms_opt_out   boolean not null default false,
    updated_at    timestamptz not null default now()
);

create table deliveries (
    id                  uuid primary key,
    event_id            uuid not null,
    event_type          text not null,
    channel             text not null check (channel in ('email', 'sms')),
    user_id             uuid,
    recipient           text not null,
    template            text not null,
    subject             text,
    body_text           text,
    body_html           text,
    status              text not null check (status in ('queued', 'sent', 'retrying', 'failed')),
    attempts            integer not null default 0,
    last_error          text,
    provider_message_id text,
    next_attempt_at     timestamptz,
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now(),
    sent_at             timestamptz,
    unique (event_id, channel)
);

create index deliveries_user_idx on deliveries (user_id, created_at desc);
create index deliveries_status_idx on deliveries (status, created_at desc);
create index deliveries_due_idx on deliveries (next_attempt_at) where status in ('queued', 'retrying');
