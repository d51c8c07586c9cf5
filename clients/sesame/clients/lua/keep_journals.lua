#!lua flags=allow-oom
-- Runs out of memory (decision 0132): the sealer notes, out of memory as with memory, the archived journals it
-- keeps while their challenge is open; a member each, bounded by the challenges open (none opens out of
-- memory), its score moved, not added again, when a journal is kept once more.
-- Note archived challenge journals kept in Redis while their challenge is open, until its expiry (decision
-- 0037): the sealer sees them again then.
-- KEYS[1] the kept journals (sorted set, {journal} slot). ARGV: per journal, its challenge's expiry (unix ms)
-- and the journal stream's name.
-- Returns how many were added.
return redis.call('ZADD', KEYS[1], unpack(ARGV))
