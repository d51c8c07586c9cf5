-- Index a challenge about to be opened among the user's pending ones, only while the user is ACTIVE:
-- a suspension then either comes first (and this refuses) or finds the id (docs/decisions/0010).
-- KEYS[1] user hash, KEYS[2] the user's pending challenges (sorted set by expiry; same {u:<id>} slot)
-- ARGV[1] challenge id, ARGV[2] its expiry (unix ms), ARGV[3] entries expired before this are dropped
-- Returns 'tracked', 'not_found' or the user's status when it is not active.
local user, pending = KEYS[1], KEYS[2]
local status = redis.call('HGET', user, 'status')
if not status then
  return 'not_found'
end
if status ~= 'active' then
  return status
end
redis.call('ZREMRANGEBYSCORE', pending, '-inf', ARGV[3])
redis.call('ZADD', pending, ARGV[2], ARGV[1])
return 'tracked'
