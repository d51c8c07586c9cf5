-- Spend a VERIFIED challenge, once, as the authority for a change of the secure number (RTS Art. 24):
-- it must be the user's, bound to the operation naming the new number, and within its retention. The same
-- request id again (a retry of the same change) gets it back. The consumption is journaled; every other
-- outcome the first time of its kind, then only counted (see record_verification.lua).
-- KEYS[1] challenge hash, KEYS[2] challenge journal stream, KEYS[3] its refusal counts (its user's {s:<n>} slot)
-- ARGV[1] time (unix ms), ARGV[2] user id, ARGV[3] op digest (hex), ARGV[4] request id,
-- ARGV[5] retention (ms), ARGV[6 ..] journal field/value pairs
-- Returns {'consumed'|'replayed', hgetall}, {'stale'}, {'mismatch'}, {'not_verified'}, {'used'} or {'not_found'}.
--#include _refusal.lua
local challenge, journal, refusals = KEYS[1], KEYS[2], KEYS[3]
local h = redis.call('HMGET', challenge, 'status', 'user_id', 'op_digest', 'expires_at', 'consumed_by',
                     'client_id', 'attempts')
if not h[1] then
  return {'not_found'}
end
local now = tonumber(ARGV[1])
local outcome
if now >= tonumber(h[4]) + tonumber(ARGV[5]) then
  outcome = 'stale'
elseif h[2] ~= ARGV[2] or h[3] ~= ARGV[3] then
  outcome = 'mismatch'
elseif h[1] ~= 'verified' then
  outcome = 'not_verified'
elseif h[5] == ARGV[4] then
  outcome = 'replayed'
elseif h[5] then
  outcome = 'used'
else
  outcome = 'consumed'
  redis.call('HSET', challenge, 'consumed_by', ARGV[4], 'consumed_at', ARGV[1])
end
local journaled = true
if outcome ~= 'consumed' then
  journaled = count_refusal(refusals, challenge, 'challenge.consume:' .. outcome, ARGV[1]) == 1
end
local entry = {}
for i = 6, #ARGV do entry[#entry + 1] = ARGV[i] end
for _, v in ipairs({'user_id', h[2], 'client_id', h[6], 'outcome', outcome, 'attempts', h[7], 'status', h[1]}) do
  entry[#entry + 1] = v
end
if journaled then
  journal_append(journal, entry)
end
if outcome == 'consumed' or outcome == 'replayed' then
  return {outcome, redis.call('HGETALL', challenge)}
end
return {outcome}
