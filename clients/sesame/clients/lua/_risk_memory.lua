-- The user's risk memory (docs/risk.md, decision 0032): read, and fed, by the steps that need
-- it. A piece, not a script: open_challenge and record_verification include it.
-- The memory's parts, in this order: the sorted sets payees, added, ips, devices, ops (member -> unix ms), then
-- the list of amounts ("<currency>:<minor>", newest first); all in the user's {s:<n>} slot.

-- The user hash, each sorted set's member/score pairs and the amounts: what Start's step evaluates the rules
-- on (_risk_rules.lua, decision 0045).
local function risk_fetch(user, parts)
  local reply = {redis.call('HGETALL', user)}
  for i = 1, 5 do
    reply[#reply + 1] = redis.call('ZRANGE', parts[i], 0, -1, 'WITHSCORES')
  end
  reply[#reply + 1] = redis.call('LRANGE', parts[6], 0, -1)
  return reply
end

-- Remember what a VERIFIED challenge teaches: each sorted set keeps its newest entries only, the amounts list
-- its newest amounts, every part expires after the retention (refreshed by each new entry). Fingerprints only.
-- a: {instant (unix ms), retention (ms), the caps of the five sets and the list, the member for each set ('':
-- none), the amount ('' : none)}: 14 strings.
local function risk_remember(parts, a)
  local at, keep = a[1], tonumber(a[2])
  for i = 1, 5 do
    local key, cap, member = parts[i], tonumber(a[2 + i]), a[8 + i]
    if member ~= '' then
      redis.call('ZADD', key, at, member)
      redis.call('ZREMRANGEBYRANK', key, 0, -(cap + 1))
      redis.call('PEXPIRE', key, keep)
    end
  end
  if a[14] ~= '' then
    redis.call('LPUSH', parts[6], a[14])
    redis.call('LTRIM', parts[6], 0, tonumber(a[8]) - 1)
    redis.call('PEXPIRE', parts[6], keep)
  end
end

-- The six parts' names for a user, from the prefix of its risk keys in its place ("<place>:risk:").
local function risk_parts(prefix, user_id)
  local parts = {}
  for _, part in ipairs({'payees', 'added', 'ips', 'devices', 'ops', 'amounts'}) do
    parts[#parts + 1] = prefix .. user_id .. ':' .. part
  end
  return parts
end
