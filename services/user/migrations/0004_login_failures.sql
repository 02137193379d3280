-- Failed sign-ins per account, keyed by the normalised email whether or not an account has it
-- (the answers must not tell which). From the 5th failure within 15 minutes the address is
-- throttled, for longer with every further failure; a successful sign-in deletes its row.
create table login_failures (
    email text primary key,
    failures integer not null,
    window_started_at timestamptz not null,
    throttled_until timestamptz
);
