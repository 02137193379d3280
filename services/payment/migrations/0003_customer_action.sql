-- A charge that waits for its customer (3-D Secure): what the storefront needs to finish it
-- with Stripe.js — the PaymentIntent's client secret and Stripe's `next_action` (JSON text).
-- Shown to the payment's customer only, and cleared once the charge is settled.
alter table payments add column client_secret text;
alter table payments add column next_action text;
