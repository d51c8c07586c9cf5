-- Read a user and its risk memory in one step (docs/risk.md): what StartChallenge's rules need, in the round
-- trip that reads the user anyway, so that the rules add none.
-- KEYS[1] the user hash, KEYS[2..6] the sorted sets payees, added, ips, devices, ops (member -> unix ms),
-- KEYS[7] the list of amounts ("<currency>:<minor>", newest first): all in the user's {u:<t>} slot.
-- Returns {} when there is no such user, else {user fields/values, then for each sorted set its
-- member/score pairs, then the amounts}.
local user = redis.call('HGETALL', KEYS[1])
if #user == 0 then
  return {}
end
local reply = {user}
for i = 2, 6 do
  reply[#reply + 1] = redis.call('ZRANGE', KEYS[i], 0, -1, 'WITHSCORES')
end
reply[#reply + 1] = redis.call('LRANGE', KEYS[7], 0, -1)
return reply
