-- Orders, their lines and their history. The order actor is the only writer of an order's row;
-- `version` guards every change, so two processes holding the same order never both move it.
create table orders (
    id              uuid primary key,
    customer_id     uuid not null,
    customer_email  text not null,
    customer_name   text not null,
    state           text not null
        check (state in ('pending', 'paid', 'shipped', 'delivered', 'cancelled', 'refunded')),
    version         bigint not null default 1,
    currency        text not null,
    total           bigint not null check (total >= 0),
    payment_method  text not null,
    idempotency_key text not null,
    -- SHA-256 of the checkout request, so a replay with another body is told apart
    request_hash    bytea not null,
    payment_id      uuid,
    tracking_number text,
    cancel_reason   text,
    -- a pending order not paid by then is cancelled
    pay_by          timestamptz not null,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    unique (customer_id, idempotency_key)
);

create index orders_customer_idx on orders (customer_id, created_at desc, id desc);
create index orders_state_idx on orders (state, created_at desc, id desc);
create index orders_created_idx on orders (created_at desc, id desc);
create index orders_unpaid_idx on orders (pay_by) where state = 'pending';

create table order_lines (
    order_id   uuid not null references orders (id),
    line_no    integer not null,
    product_id uuid not null,
    name       text not null,
    quantity   integer not null check (quantity > 0),
    unit_price bigint not null check (unit_price >= 0),
    primary key (order_id, line_no)
);

-- Every transition: from where, to where, who asked and why.
create table order_history (
    id         bigint generated always as identity primary key,
    order_id   uuid not null references orders (id),
    from_state text,
    to_state   text not null,
    actor      text not null,
    reason     text,
    at         timestamptz not null default now()
);

create index order_history_order_idx on order_history (order_id, id);

-- Events waiting to be published, written in the same transaction as the change they report
-- (bridge/src/outbox.rs), and events already handled (bridge/src/inbox.rs).
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
