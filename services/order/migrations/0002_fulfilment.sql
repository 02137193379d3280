-- What an order needs to be fulfilled and trusted: a copy of the address it ships to, the
-- shipping method and its delivery estimate, what shipping and tax came to (checkout computes
-- them the way the quote does), and who carries it once shipped. Orders placed before this
-- have none of it (null).
alter table orders
    add column subtotal           bigint,
    add column shipping           bigint,
    add column tax                bigint,
    add column prices_include_tax boolean,
    add column shipping_method    text,
    add column delivery_min_days  integer,
    add column delivery_max_days  integer,
    add column ship_name          text,
    add column ship_line1         text,
    add column ship_line2         text,
    add column ship_city          text,
    add column ship_region        text,
    add column ship_postal_code   text,
    add column ship_country       text,
    add column ship_phone         text,
    add column carrier            text;

-- The admin listing filters by country (and state).
create index orders_country_idx on orders (ship_country, created_at desc, id desc);

-- The tax in each line (included in the line's total when prices include tax).
alter table order_lines add column tax bigint;
