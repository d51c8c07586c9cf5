#!lua flags=allow-oom
-- Runs out of memory (decision 0111): a dispatcher sending an SMS keeps it, so that no other sends it again.
-- A dispatcher still sending an entry it took says so: the entry's idle time starts again, so that no other
-- dispatcher claims it as a dead one's and sends the SMS a second time (a send slower than the claim idle
-- time: a slow gateway, retries and failover, SMPP pacing a burst).
-- KEYS[1] the outbox stream. ARGV[1] the consumer group, ARGV[2] the entry id, ARGV[3] the consumer.
-- Returns 1 when the entry was pending with the consumer and is kept, 0 otherwise (settled, or claimed by
-- another meanwhile: nothing is changed, the retry counter never).
local pending = redis.pcall('XPENDING', KEYS[1], ARGV[1], 'IDLE', 0, ARGV[2], ARGV[2], 1, ARGV[3])
if type(pending) ~= 'table' or pending.err or #pending == 0 then
  return 0
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1
