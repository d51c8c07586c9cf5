-- Note what the SMS gateway said about a challenge's message, with its journal entry.
-- KEYS[1] challenge hash, KEYS[2] challenge journal stream (same {ch:<id>} slot)
-- ARGV[1] delivery state, ARGV[2] provider reference, ARGV[3 ..] journal field/value pairs
-- Returns 1, or 0 when the challenge does not exist.
local challenge, journal = KEYS[1], KEYS[2]
local h = redis.call('HMGET', challenge, 'status', 'user_id', 'client_id', 'op_digest', 'attempts')
if not h[1] then
  return 0
end
redis.call('HSET', challenge, 'delivery', ARGV[1], 'provider_ref', ARGV[2])
local entry = {}
for i = 3, #ARGV do entry[#entry + 1] = ARGV[i] end
for _, v in ipairs({'user_id', h[2], 'client_id', h[3], 'op_digest', h[4], 'outcome', ARGV[1],
                    'attempts', h[5], 'status', h[1]}) do
  entry[#entry + 1] = v
end
redis.call('XADD', journal, '*', unpack(entry))
return 1
