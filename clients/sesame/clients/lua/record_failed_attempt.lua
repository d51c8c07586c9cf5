-- Count one more wrong code in a row for a user; the max-th blocks the user, longer with each block in a
-- row (RTS Art. 4(3)(b): at most five consecutive failures before a block). One atomic step, journaled.
-- KEYS[1] user hash, KEYS[2] user journal stream (same {u:<id>} slot)
-- ARGV[1] time (unix ms), ARGV[2] failures that block, ARGV[3] first block (ms), ARGV[4] longest block (ms),
-- ARGV[5 ..] journal field/value pairs (event head)
-- Returns {'counted'|'blocked', hgetall} or {'not_found'}.
local user, journal = KEYS[1], KEYS[2]
if redis.call('EXISTS', user) == 0 then
  return {'not_found'}
end
local now, max_failures = tonumber(ARGV[1]), tonumber(ARGV[2])
local first, longest = tonumber(ARGV[3]), tonumber(ARGV[4])
local failures = redis.call('HINCRBY', user, 'failures', 1)
local outcome, blocks, blocked_until = 'counted', tonumber(redis.call('HGET', user, 'blocks') or '0'), 0
if failures >= max_failures then
  outcome = 'blocked'
  blocks = redis.call('HINCRBY', user, 'blocks', 1)
  -- Doubling, capped; computed on integers so that no float reaches the hash.
  local length = first
  for _ = 2, blocks do
    length = math.min(longest, length * 2)
  end
  length = math.min(longest, length)
  blocked_until = now + length
  failures = 0
  redis.call('HSET', user, 'failures', 0, 'blocked_until', blocked_until)
end
local entry = {}
for i = 5, #ARGV do entry[#entry + 1] = ARGV[i] end
for _, v in ipairs({'outcome', outcome, 'failures', failures, 'blocks', blocks, 'blocked_until', blocked_until}) do
  entry[#entry + 1] = v
end
redis.call('XADD', journal, '*', unpack(entry))
return {outcome, redis.call('HGETALL', user)}
