-- Give back one unit of a send budget taken at ARGV[1] (unix ms), if there is one (docs/decisions/0011).
-- KEYS[1] the subject's sorted set ({sb:<kind>:<key>} slot)
-- Returns 1 when a unit was given back, 0 otherwise.
local taken = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[1], 'LIMIT', 0, 1)
if #taken == 0 then
  return 0
end
return redis.call('ZREM', KEYS[1], taken[1])
