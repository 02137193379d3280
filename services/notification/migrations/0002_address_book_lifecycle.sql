-- The address book follows UserUpdated (guarded by the event's time, so an older event applied
-- late changes nothing) and forgets a deleted customer for good: the row stays, emptied and
-- marked erased, so a late OrderPlaced cannot bring the address back.
alter table recipients
    add column as_of     timestamptz not null default '-infinity',
    add column erased_at timestamptz;
