-- The catalogue: categories (optionally nested) and products. Prices are integer minor units
-- with an ISO 4217 code. A deleted product is archived, never removed: old orders still name it.
create table categories (
    id          uuid primary key,
    name        text not null,
    description text not null default '',
    parent_id   uuid references categories (id) on delete restrict,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);

create unique index categories_name_key on categories (lower(name));

create table products (
    id          uuid primary key,
    sku         text not null constraint products_sku_key unique,
    name        text not null,
    description text not null default '',
    price_minor bigint not null check (price_minor >= 0),
    currency    char(3) not null,
    -- restrict: a category that still has products (archived ones too) cannot be deleted
    category_id uuid not null references categories (id) on delete restrict,
    archived_at timestamptz,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    -- full-text search over name (weighted higher) and description
    search      tsvector generated always as (
                    setweight(to_tsvector('english', name), 'A') ||
                    setweight(to_tsvector('english', description), 'B')
                ) stored
);

create index products_search_idx on products using gin (search);
create index products_category_idx on products (category_id);
create index products_price_idx on products (price_minor, id) where archived_at is null;
create index products_name_idx on products (name, id) where archived_at is null;
create index products_newest_idx on products (created_at desc, id) where archived_at is null;
