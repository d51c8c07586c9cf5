-- Index a challenge about to be opened among the user's pending ones, only while the user is ACTIVE and
-- its secure number is still the one the code goes to: a suspension or a number change then either comes
-- first (and this refuses) or finds the id and voids it (docs/decisions/0010, 0014).
-- KEYS[1] user hash, KEYS[2] the user's pending challenges (sorted set by expiry; same {u:<id>} slot)
-- ARGV[1] challenge id, ARGV[2] its expiry (unix ms), ARGV[3] entries expired before this are dropped,
-- ARGV[4] the number the code goes to
-- Returns 'tracked', 'not_found', 'phone_changed' or the user's status when it is not active.
local user, pending = KEYS[1], KEYS[2]
local h = redis.call('HMGET', user, 'status', 'phone')
if not h[1] then
  return 'not_found'
end
if h[1] ~= 'active' then
  return h[1]
end
if h[2] ~= ARGV[4] then
  return 'phone_changed'
end
redis.call('ZREMRANGEBYSCORE', pending, '-inf', ARGV[3])
redis.call('ZADD', pending, ARGV[2], ARGV[1])
return 'tracked'
