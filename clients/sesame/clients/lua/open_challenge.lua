-- Open a challenge, in one step: only while its user is ACTIVE, not blocked after wrong codes in a row at
-- that instant (a start racing the fifth wrong code cannot slip a challenge past the block's voiding), and
-- the number its code goes to is still the user's secure number; index it among the user's pending ones
-- (so that a suspension or a number change that comes later finds and voids it); take one unit of each send
-- budget; store it OPEN until expiry + retention. Never overwrite, never reuse an id. A refusal writes
-- nothing, so a unit is taken if and only if the challenge opens, and its code is then handed to the SMS
-- gateway (docs/decisions/0010, 0014).
-- KEYS[1] challenge hash, KEYS[2] challenge journal stream, KEYS[3] user hash, KEYS[4] the user's pending
-- challenges (sorted set by expiry): all in the user's {u:<t>} slot; KEYS[5 .. 4+b] the send budgets (the
-- user's in the same slot; the number's, caller's and global in their {sb:<kind>:<key>} slots: this script
-- spans those on purpose, so that a unit is spent if and only if the SMS goes, docs/decisions/0019).
-- ARGV[1] absolute purge time (unix ms, from the challenge's own expiry, not Redis time), ARGV[2] time the
-- units are taken (unix ms), ARGV[3] index entries expired before this are dropped (unix ms), ARGV[4] the
-- number the code goes to, ARGV[5] the challenge id, ARGV[6] its expiry (unix ms), ARGV[7] b = count of
-- budgets, ARGV[8 .. 7+2b] each budget's limit and window (ms), ARGV[8+2b] n = count of hash field/value
-- elements, then n hash elements, then journal pairs
-- Returns {'opened'}, {'not_found'} (no such user), {'not_active', status}, {'blocked', blocked_until (unix
-- ms)}, {'phone_changed'}, {'exists'} (the id was already used: the journal outlives the hash) or
-- {'exhausted', budget index (0-based), wait_ms}.
--#include _send_budgets.lua
local challenge, journal, user, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local h = redis.call('HMGET', user, 'status', 'phone', 'blocked_until')
local blocked_until = tonumber(h[3] or '0') or 0
if not h[1] then
  return {'not_found'}
elseif h[1] ~= 'active' then
  return {'not_active', h[1]}
elseif tonumber(ARGV[2]) < blocked_until then
  return {'blocked', blocked_until}
elseif h[2] ~= ARGV[4] then
  return {'phone_changed'}
end
if redis.call('EXISTS', challenge, journal) > 0 then
  return {'exists'}
end
local now, budgets = tonumber(ARGV[2]), tonumber(ARGV[7])
local refusal = budget_refusal(5, 8, budgets, now)
if refusal then
  return refusal
end
take_budgets(5, 8, budgets, now)
local first = 8 + 2 * budgets
local n = tonumber(ARGV[first])
local fields, entry = {}, {}
for i = first + 1, first + n do fields[#fields + 1] = ARGV[i] end
for i = first + n + 1, #ARGV do entry[#entry + 1] = ARGV[i] end
redis.call('ZREMRANGEBYSCORE', pending, '-inf', ARGV[3])
redis.call('ZADD', pending, ARGV[6], ARGV[5])
redis.call('HSET', challenge, unpack(fields))
redis.call('PEXPIREAT', challenge, ARGV[1])
journal_append(journal, entry)
return {'opened'}
