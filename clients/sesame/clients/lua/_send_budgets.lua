-- Send budgets (docs/decisions/0011, 0014), included where a script sends a code: one unit from each budget,
-- taken in the step that opens the challenge or takes the resend, so that a unit is spent if and only if an
-- SMS goes. Each budget is a sorted set of the times units were taken: at most `limit` units per rolling
-- window; a unit taken at t counts while now < t + window. A refusal writes nothing.
-- The budgets' keys are the list `keys` (in KEYS, or named by the script from what it read), with each one's
-- limit and window (ms) as pairs in the list `limits`. A unit's member is the name of the SMS it paid for
-- (its hold's name: the challenge id for a Start's, the resend's hold name for a resend's; unique for ever),
-- so that each give-back of a unit whose SMS never went is an exact ZREM of that member, found once
-- (decision 0101).

-- {'exhausted', index of the first spent budget (0-based), exact wait in ms until its unit frees}, or nil.
local function budget_refusal(keys, limits, now)
  for i = 0, #keys - 1 do
    local sends = keys[i + 1]
    local limit, window = tonumber(limits[2 * i + 1]), tonumber(limits[2 * i + 2])
    local counting = redis.call('ZCOUNT', sends, '(' .. (now - window), '+inf')
    if counting >= limit then
      -- The (counting - limit + 1)-th oldest counting unit is the one whose expiry brings the count under limit.
      local frees = redis.call('ZRANGEBYSCORE', sends, '(' .. (now - window), '+inf', 'WITHSCORES',
                               'LIMIT', counting - limit, 1)
      return {'exhausted', i, tonumber(frees[2]) + window - now}
    end
  end
  return nil
end

-- Take one unit of each budget at `now` (unix ms), named `name` (the SMS's hold name; nil: unnamed, a
-- resend taken without one, which nothing gives back); call after budget_refusal answered nil.
local function take_budgets(keys, limits, now, name)
  for i = 0, #keys - 1 do
    local sends = keys[i + 1]
    local window = tonumber(limits[2 * i + 2])
    redis.call('ZREMRANGEBYSCORE', sends, '-inf', now - window)
    -- Members are unique: the SMS's name; unnamed, the time, then the first free sequence number at that
    -- millisecond (NX adds none that is there: one command per try, where a ZSCORE and then the ZADD were
    -- two; decision 0061).
    if name then
      redis.call('ZADD', sends, now, name)
    else
      local n = 0
      while redis.call('ZADD', sends, 'NX', now, now .. '-' .. n) == 0 do n = n + 1 end
    end
    local newest = redis.call('ZRANGE', sends, -1, -1, 'WITHSCORES')
    expire_at(sends, tonumber(newest[2]) + window, now)  -- a duration: Redis's clock may differ (0103)
  end
end
