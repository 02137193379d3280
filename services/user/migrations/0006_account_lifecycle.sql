-- An account's life after registration: a proven email address, single-use tokens for proving
-- an address and for resetting a password, and deletion. A deleted account keeps its row (its
-- id is what orders and payments name) with the personal data replaced and its address freed
-- for a new account.
alter table users
    add column email_verified_at timestamptz,
    add column deleted_at        timestamptz;

-- Accounts that existed before verification was asked for keep working as they did.
update users set email_verified_at = created_at;

-- Single-use tokens, of which only a SHA-256 is kept. `email` is the address the token proves
-- (for an email change, the new one) or, for a reset, the address it was sent to.
create table account_tokens (
    token_hash bytea primary key,
    user_id    uuid not null references users (id) on delete cascade,
    purpose    text not null check (purpose in ('verify_email', 'password_reset')),
    email      text not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    used_at    timestamptz
);

-- The rate limits count recent tokens per account and per address.
create index account_tokens_user_idx on account_tokens (user_id, purpose, created_at desc);
create index account_tokens_email_idx on account_tokens (email, purpose, created_at desc);
