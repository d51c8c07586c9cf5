-- The user's risk memory (docs/risk.md, decision 0032): read with its version, and fed, by the steps that need
-- it. A piece, not a script: read_user_risk, open_challenge, record_verification and remember_risk include it.
-- The memory's parts, in this order: the sorted sets payees, added, ips, devices, ops (member -> unix ms), then
-- the list of amounts ("<currency>:<minor>", newest first); all in the user's {s:<n>} slot.

-- The user hash, each sorted set's member/score pairs and the amounts, and their version: the SHA-1 of exactly
-- what was read (the hash's pairs sorted, each string length-prefixed). Any change by any script, an expiry or
-- a cut moves it, and no writer has to remember to bump anything. nil when there is no such user.
local function risk_read(user, parts)
  local fields = redis.call('HGETALL', user)
  if #fields == 0 then
    return nil, nil
  end
  local reply = {fields}
  for i = 1, 5 do
    reply[#reply + 1] = redis.call('ZRANGE', parts[i], 0, -1, 'WITHSCORES')
  end
  reply[#reply + 1] = redis.call('LRANGE', parts[6], 0, -1)
  local function framed(list)
    local out = {}
    for _, s in ipairs(list) do out[#out + 1] = #s .. ':' .. s end
    return table.concat(out)
  end
  local sorted = {}
  for i = 1, #fields, 2 do sorted[#sorted + 1] = framed({fields[i], fields[i + 1]}) end
  table.sort(sorted)
  local text = {framed(sorted)}
  for i = 2, 7 do text[#text + 1] = framed(reply[i]) end
  return reply, redis.sha1hex(framed(text))
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
