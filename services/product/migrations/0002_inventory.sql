-- Stock per product. available = on_hand - reserved; the checks make overselling impossible
-- whatever the interleaving of transactions.
create table stock (
    product_id uuid primary key references products (id),
    on_hand    integer not null check (on_hand >= 0),
    reserved   integer not null default 0 check (reserved >= 0),
    updated_at timestamptz not null default now(),
    constraint stock_reserved_within_on_hand check (reserved <= on_hand)
);

-- Every change of on_hand by an admin, with why and by whom.
create table stock_adjustments (
    id            bigint generated always as identity primary key,
    product_id    uuid not null references products (id),
    delta         integer not null,
    on_hand_after integer not null,
    reason        text not null,
    actor         text not null,
    created_at    timestamptz not null default now()
);

create index stock_adjustments_product_idx on stock_adjustments (product_id, id);

-- Reservations for orders: all lines or none, one per order id (idempotent), held until
-- committed (sold), released, or expired.
create table reservations (
    order_id     uuid primary key,
    status       text not null check (status in ('reserved', 'committed', 'released', 'expired')),
    -- SHA-256 of the normalised lines, so a replay with other lines is told apart
    request_hash bytea not null,
    expires_at   timestamptz not null,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now()
);

create index reservations_expiry_idx on reservations (expires_at) where status = 'reserved';

create table reservation_lines (
    order_id   uuid not null references reservations (order_id),
    product_id uuid not null references products (id),
    quantity   integer not null check (quantity > 0),
    primary key (order_id, product_id)
);
