-- The user's risk memory (docs/risk.md, decision 0032): read, and fed, by the steps that need
-- it. A piece, not a script: open_challenge and record_verification include it.
-- The memory's parts, in this order: the sorted sets payees, added, ips, devices, ops (member -> unix ms), then
-- the list of amounts ("<currency>:<minor>", newest first); all in the user's {s:<n>} slot.

-- What Start's step reads of the memory, each only when a rule asks for a signal it gives (_risk_rules.lua
-- computes the signals lazily, decision 0051): never a whole part but the list of amounts. An instant is
-- unix ms; `after` is exclusive, as the signals' windows are ("now - at < window").

-- The instant `member` was last seen in the set `key`, or nil.
local function risk_seen_at(key, member)
  local at = redis.call('ZSCORE', key, member)
  if at then return tonumber(at) end
  return nil
end

-- Whether the set `key` holds anything (an empty set does not exist).
local function risk_any(key)
  return redis.call('EXISTS', key) == 1
end

-- The members of the set `key` seen after `after` (their instants too, ascending, with `scores`).
local function risk_since(key, after, scores)
  local from = '(' .. string.format('%.0f', after)
  if scores then return redis.call('ZRANGEBYSCORE', key, from, '+inf', 'WITHSCORES') end
  return redis.call('ZRANGEBYSCORE', key, from, '+inf')
end

-- The last amounts ("<currency>:<minor>", newest first).
local function risk_amounts(key)
  return redis.call('LRANGE', key, 0, -1)
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
