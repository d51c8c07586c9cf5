-- A right code: the user's wrong codes and blocks in a row start again from zero. Journaled when they change.
-- KEYS[1] user hash, KEYS[2] user journal stream (same {u:<id>} slot)
-- ARGV[1 ..] journal field/value pairs (event head)
-- Returns 1, or 0 when the user does not exist.
local user, journal = KEYS[1], KEYS[2]
if redis.call('EXISTS', user) == 0 then
  return 0
end
local h = redis.call('HMGET', user, 'failures', 'blocks', 'blocked_until')
if (tonumber(h[1] or '0') or 0) == 0 and (tonumber(h[2] or '0') or 0) == 0 and (tonumber(h[3] or '0') or 0) == 0 then
  return 1
end
redis.call('HSET', user, 'failures', 0, 'blocks', 0, 'blocked_until', 0)
local entry = {}
for i = 1, #ARGV do entry[#entry + 1] = ARGV[i] end
for _, v in ipairs({'outcome', 'reset', 'failures', 0, 'blocks', 0, 'blocked_until', 0}) do
  entry[#entry + 1] = v
end
redis.call('XADD', journal, '*', unpack(entry))
return 1
