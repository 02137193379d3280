-- A sold reservation whose order was cancelled before it shipped: its units are back on hand.
alter table reservations drop constraint reservations_status_check;
alter table reservations add constraint reservations_status_check
    check (status in ('reserved', 'committed', 'released', 'expired', 'returned'));
