#!lua flags=allow-oom
-- Runs out of memory (decision 0111): a challenge the caller gives up is closed, so that its code is no
-- longer usable; once per challenge, a refusal after it only counted.
-- Void an OPEN, unexpired challenge on the caller's request; refusals are journaled too.
-- KEYS[1] challenge hash, KEYS[2] challenge journal stream, KEYS[3] its refusal counts (its user's {s:<n>} slot)
-- ARGV[1] request time (unix ms), ARGV[2] the name of the user's pending index less the user id (the same
-- place), ARGV[3 ..] journal field/value pairs
-- Returns {'cancelled', hgetall}, {'closed'} or {'not_found'}.
--#include _refusal.lua
local challenge, journal, refusals = KEYS[1], KEYS[2], KEYS[3]
local h = redis.call('HMGET', challenge, 'status', 'expires_at', 'user_id', 'client_id', 'op_digest', 'attempts')
local status = h[1]
if not status then
  return {'not_found'}
end
local outcome = 'refused'
if status == 'open' and tonumber(ARGV[1]) < tonumber(h[2]) then
  status, outcome = 'cancelled', 'cancelled'
  redis.call('HSET', challenge, 'status', status)
  redis.call('ZREM', ARGV[2] .. h[3], redis.call('HGET', challenge, 'challenge_id'))  -- no longer open (0093)
end
if outcome == 'refused' then
  -- Journaled the first time, then only counted (see record_verification.lua).
  if count_refusal(refusals, challenge, 'challenge.cancel:refused', ARGV[1]) > 1 then
    return {'closed'}
  end
end
local entry = {}
for i = 3, #ARGV do entry[#entry + 1] = ARGV[i] end
for _, v in ipairs({'user_id', h[3], 'client_id', h[4], 'op_digest', h[5], 'outcome', outcome,
                    'attempts', h[6], 'status', status}) do
  entry[#entry + 1] = v
end
journal_append(journal, entry)
if outcome == 'refused' then
  return {'closed'}
end
return {'cancelled', redis.call('HGETALL', challenge)}
