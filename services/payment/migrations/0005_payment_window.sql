-- When the order's payment window ends (OrderPlaced v3): a charge not started by then is not
-- started, since the order cancels itself then. Null for orders placed by an older order service.
alter table payments add column if not exists pay_by timestamptz;
