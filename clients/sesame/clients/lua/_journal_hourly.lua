-- Entries a caller can repeat at will, journaled for the user's first few of each hour, then counted
-- (decisions 0050 and 0054): a risk denial, a back-office no-op. Included by open_challenge.lua and by the
-- scripts that include _noops.lua (pieces do not include pieces).

-- Journal `entry` in `journal` unless the user's hour (from its first such entry) already journaled
-- `per_hour` entries of `kind`: then only counted in the user hash (`<kind>_unjournaled`), the count sealed
-- with the next one journaled (`unjournaled_before`). The window is `<kind>_since` and `<kind>` in the user
-- hash. `now` unix ms. True when journaled.
local function journal_hourly(user, kind, per_hour, journal, entry, now)
  local window = redis.call('HMGET', user, kind .. '_since', kind, kind .. '_unjournaled')
  local since, count, unjournaled = tonumber(window[1] or '0'), tonumber(window[2] or '0'), window[3]
  if now - since >= 3600000 then
    since, count = now, 0
  end
  count = count + 1
  if count > per_hour then
    redis.call('HSET', user, kind .. '_since', since, kind, count,
               kind .. '_unjournaled', (tonumber(unjournaled or '0') or 0) + 1)
    return false
  end
  redis.call('HSET', user, kind .. '_since', since, kind, count)
  if unjournaled then
    redis.call('HDEL', user, kind .. '_unjournaled')
    entry[#entry + 1] = 'unjournaled_before'
    entry[#entry + 1] = unjournaled
  end
  journal_append(journal, entry)
  return true
end
