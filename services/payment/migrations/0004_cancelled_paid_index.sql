-- The sweeper looks for paid payments of cancelled orders (to refund) every few seconds; without
-- this index that was a scan of every payment ever made (3.5 ms at ~40k payments, growing).
create index if not exists payments_cancelled_paid_idx on payments (id)
    where status = 'succeeded' and order_cancelled;
