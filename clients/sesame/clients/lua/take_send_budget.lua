-- Take one unit of a send budget (docs/decisions/0011): at most ARGV[2] units per rolling window of
-- ARGV[3] ms, as a sorted set of the times units were taken. A unit taken at t counts while now < t + window.
-- A refusal writes nothing and answers the exact wait until the unit that must free first frees.
-- KEYS[1] the subject's sorted set ({sb:<kind>:<key>} slot)
-- ARGV[1] request time (unix ms), ARGV[2] limit, ARGV[3] window (ms)
-- Returns {'taken'} or {'exhausted', wait_ms}.
local sends = KEYS[1]
local now, limit, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local counting = redis.call('ZCOUNT', sends, '(' .. (now - window), '+inf')
if counting >= limit then
  -- The (counting - limit + 1)-th oldest counting unit is the one whose expiry brings the count under limit.
  local frees = redis.call('ZRANGEBYSCORE', sends, '(' .. (now - window), '+inf', 'WITHSCORES',
                           'LIMIT', counting - limit, 1)
  return {'exhausted', tonumber(frees[2]) + window - now}
end
redis.call('ZREMRANGEBYSCORE', sends, '-inf', now - window)
-- Members are unique: the time, then the first free sequence number at that millisecond.
local n = 0
while redis.call('ZSCORE', sends, ARGV[1] .. '-' .. n) do n = n + 1 end
redis.call('ZADD', sends, now, ARGV[1] .. '-' .. n)
local newest = redis.call('ZRANGE', sends, -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', sends, tonumber(newest[2]) + window)
return {'taken'}
