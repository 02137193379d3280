-- Accounts. Emails are stored lower-cased and trimmed, so the unique constraint is the one that
-- decides duplicates (409), also between concurrent registrations.
create table users (
    id            uuid primary key,
    email         text not null constraint users_email_key unique,
    name          text not null,
    phone         text,
    role          text not null check (role in ('customer', 'admin')),
    -- argon2id PHC string
    password_hash text not null,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
