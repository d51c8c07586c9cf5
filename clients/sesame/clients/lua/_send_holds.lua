-- Send units held and spent in the {sb} slot (docs/decisions/0046), included by take_send_units.lua and
-- spend_send_units.lua. Each budget is two sorted sets: `<budget>` the units spent (member: the hold's name,
-- score: the time its unit was taken, unix ms) and `<budget>:held` the units held for an SMS not handed to
-- the gateway yet (same member and score). A unit counts while spent within the window, or held within the
-- grace: a hold nobody spent (its Start crashed before its step, or its step refused and the release was
-- lost) stops counting after the grace, so a crash leaks nothing past it.

-- How many units of the budget count at `now`: spent within `window`, held within `grace`.
local function units_counting(spent, held, now, window, grace)
  return redis.call('ZCOUNT', spent, '(' .. (now - window), '+inf')
    + redis.call('ZCOUNT', held, '(' .. (now - grace), '+inf')
end

-- The exact wait (ms) until the count of a budget at its limit falls under it: the (counting - limit + 1)-th
-- oldest counting unit frees at its time + window (a held unit is taken to be spent, as it will be).
local function units_wait(spent, held, now, window, grace, counting, limit)
  local k = counting - limit + 1
  local times = {}
  local s = redis.call('ZRANGEBYSCORE', spent, '(' .. (now - window), '+inf', 'WITHSCORES', 'LIMIT', 0, k)
  for i = 2, #s, 2 do times[#times + 1] = tonumber(s[i]) end
  local h = redis.call('ZRANGEBYSCORE', held, '(' .. (now - grace), '+inf', 'WITHSCORES', 'LIMIT', 0, k)
  for i = 2, #h, 2 do times[#times + 1] = tonumber(h[i]) end
  table.sort(times)
  return times[k] + window - now
end

-- Spend the unit named `name` taken at `at` in a budget: spent sets keep what counts in the window only.
local function unit_spent(spent, name, at, now, window)
  redis.call('ZREMRANGEBYSCORE', spent, '-inf', now - window)
  redis.call('ZADD', spent, at, name)
  local newest = redis.call('ZRANGE', spent, -1, -1, 'WITHSCORES')
  expire_at(spent, tonumber(newest[2]) + window, now)  -- a duration: Redis's clock may differ (0103)
end
