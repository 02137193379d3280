-- Each customer's address book: at most 20 addresses (checked by the service under a lock on
-- the user's row), at most one of them the default shipping address.
create table addresses (
    id          uuid primary key,
    user_id     uuid not null references users (id) on delete cascade,
    name        text not null,
    line1       text not null,
    line2       text,
    city        text not null,
    region      text,
    postal_code text not null,
    country     text not null check (country ~ '^[A-Z]{2}$'),
    phone       text,
    is_default  boolean not null default false,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);

create index addresses_user_idx on addresses (user_id, created_at, id);
create unique index addresses_one_default_idx on addresses (user_id) where is_default;
