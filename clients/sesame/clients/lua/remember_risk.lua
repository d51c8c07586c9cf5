-- Remember what a VERIFIED challenge teaches about its user (docs/risk.md), in one step: each sorted set keeps
-- its newest entries only, the amounts list its newest amounts, and every part expires after the retention
-- (refreshed by each new entry). Fingerprints only: no IBAN, IP or device id in clear.
-- KEYS[1..5] payees, added, ips, devices, ops (sorted sets: member -> unix ms), KEYS[6] amounts (list): all
-- in the user's {u:<t>} slot.
-- ARGV[1] the instant (unix ms), ARGV[2] retention (ms), ARGV[3..8] the caps of the five sets and the list,
-- ARGV[9..13] the member for each set ('' for none), ARGV[14] the amount ("<currency>:<minor>", '' for none).
local at, keep = ARGV[1], tonumber(ARGV[2])
for i = 1, 5 do
  local key, cap, member = KEYS[i], tonumber(ARGV[2 + i]), ARGV[8 + i]
  if member ~= '' then
    redis.call('ZADD', key, at, member)
    redis.call('ZREMRANGEBYRANK', key, 0, -(cap + 1))
    redis.call('PEXPIRE', key, keep)
  end
end
if ARGV[14] ~= '' then
  redis.call('LPUSH', KEYS[6], ARGV[14])
  redis.call('LTRIM', KEYS[6], 0, tonumber(ARGV[8]) - 1)
  redis.call('PEXPIRE', KEYS[6], keep)
end
return 1
