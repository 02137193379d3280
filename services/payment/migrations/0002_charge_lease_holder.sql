-- Which replica holds a charge's lease (`next_attempt_at` in the future while an attempt runs):
-- only that one may send the charge before the lease runs out, and a replica restarted under
-- the same name takes its own leases back at once instead of waiting them out.
alter table payments add column leased_by text;
