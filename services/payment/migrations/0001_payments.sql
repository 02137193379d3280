-- Payments, their attempts at the provider, and refunds. The payment actor is the only writer of
-- a payment's rows. One payment per order (`order_id` unique), recorded before the provider is
-- ever called: whatever is redelivered or restarted, an order is charged at most once.
create table payments (
    id                uuid primary key,
    order_id          uuid not null unique,
    customer_id       uuid not null,
    amount            bigint not null check (amount >= 0),
    currency          text not null,
    payment_method    text not null,
    -- Stripe's PaymentIntent states, `failed` for a final decline
    status            text not null check (status in
        ('requires_payment_method', 'processing', 'succeeded', 'failed', 'canceled', 'refunded')),
    provider          text not null,
    -- sent with every charge request: the provider charges a key once
    idempotency_key   text not null unique,
    -- the provider's id for the charge (pi_…)
    provider_reference text,
    failure_code      text,
    failure_reason    text,
    amount_refunded   bigint not null default 0 check (amount_refunded >= 0),
    -- the order was cancelled: a charge that succeeds anyway is refunded
    order_cancelled   boolean not null default false,
    attempts          integer not null default 0,
    -- when the sweeper should drive the charge again (a lease while an attempt runs)
    next_attempt_at   timestamptz,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now()
);

create index payments_customer_idx on payments (customer_id, created_at desc);
create index payments_reference_idx on payments (provider_reference);
create index payments_due_idx on payments (next_attempt_at) where next_attempt_at is not null;

create table refunds (
    id                 uuid primary key,
    payment_id         uuid not null references payments (id),
    amount             bigint not null check (amount > 0),
    reason             text,
    -- a user id, or `system` (the order was cancelled)
    requested_by       text not null,
    status             text not null check (status in ('pending', 'succeeded', 'failed')),
    provider_reference text,
    failure_reason     text,
    attempts           integer not null default 0,
    next_attempt_at    timestamptz,
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now()
);

create index refunds_payment_idx on refunds (payment_id, created_at);
create index refunds_due_idx on refunds (next_attempt_at) where status = 'pending';

-- Every call to the provider and what came of it.
create table payment_attempts (
    id         bigint generated always as identity primary key,
    payment_id uuid not null references payments (id),
    refund_id  uuid references refunds (id),
    outcome    text not null,
    detail     text,
    at         timestamptz not null default now()
);

create index payment_attempts_payment_idx on payment_attempts (payment_id, id);

-- Stripe webhook events already applied: a replayed event changes nothing.
create table webhook_events (
    id          text primary key,
    type        text not null,
    received_at timestamptz not null default now()
);

-- The simulated provider's books (SHOP_PAYMENT_PROVIDER=simulated): like Stripe, it charges an
-- idempotency key once and answers a repeated request with the first answer.
create table simulated_charges (
    idempotency_key text primary key,
    reference       text not null unique,
    payment_method  text not null,
    amount          bigint not null,
    currency        text not null,
    status          text not null,
    decline_code    text,
    created_at      timestamptz not null default now()
);

create table simulated_refunds (
    idempotency_key  text primary key,
    reference        text not null unique,
    charge_reference text not null,
    amount           bigint not null,
    created_at       timestamptz not null default now()
);
