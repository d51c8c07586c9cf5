#!lua flags=allow-oom
-- Runs out of memory (decision 0132): a seal is kept while Redis is full, bounded by the entries it seals
-- (each once), and let go with them by drop_archived.lua once the archive has them.
-- Keep a seal (docs/decisions/0027). The entries it seals stay in the feed until the archive has them.
-- KEYS[1] the lease, KEYS[2] the seals stream, KEYS[3] the head of the last archived seal ({journal} slot).
-- ARGV[1] the holder, ARGV[2] the id of the last seal it read ('' none), ARGV[3] the seal's id (its last
-- entry's), ARGV[4 ..] the seal's fields (block, signature, leaves).
-- Returns 'sealed'; 'lost' when the holder no longer has the lease; 'forked' when another seal came after
-- the one it read (a sealer that lost its lease while signing): nothing is written then.
local lease, seals = KEYS[1], KEYS[2]
if redis.call('GET', lease) ~= ARGV[1] then
  return 'lost'
end
local last = redis.call('XREVRANGE', seals, '+', '-', 'COUNT', 1)
local last_id = redis.call('HGET', KEYS[3], 'id') or ''
if #last > 0 then last_id = last[1][1] end
if last_id ~= ARGV[2] then
  return 'forked'
end
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', seals, ARGV[3], unpack(fields))
return 'sealed'
