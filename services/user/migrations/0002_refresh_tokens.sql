-- Rotating refresh tokens. Only a SHA-256 of each token is kept. Every login starts a family;
-- every refresh marks the presented token used and issues the next one in the same family.
-- Presenting a used token again means it leaked: the whole family is revoked.
create table refresh_tokens (
    token_hash bytea primary key,
    family_id  uuid not null,
    user_id    uuid not null references users (id) on delete cascade,
    issued_at  timestamptz not null default now(),
    expires_at timestamptz not null,
    used_at    timestamptz,
    revoked_at timestamptz
);

create index refresh_tokens_family_idx on refresh_tokens (family_id);
create index refresh_tokens_user_idx on refresh_tokens (user_id);
