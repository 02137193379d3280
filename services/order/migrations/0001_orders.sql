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

-- The outbox and the inbox are the bridge's (bridge/migrations), applied next to these.
