-- Store a new OPEN challenge until expiry + retention, and take one unit of each send budget, in one step:
-- never overwrite, never reuse an id, and a unit is taken if and only if the challenge opens (its code
-- is then handed to the SMS gateway; docs/decisions/0014).
-- KEYS[1] challenge hash, KEYS[2] challenge journal stream (same {ch:<id>} slot), KEYS[3 .. 2+b] the send
-- budgets ({sb:<kind>:<key>} slots: this script spans slots on purpose, Redis Cluster is not supported yet)
-- ARGV[1] absolute purge time (unix ms, from the challenge's own expiry, not Redis time), ARGV[2] time the
-- units are taken (unix ms), ARGV[3] b = count of budgets, ARGV[4 .. 3+2b] each budget's limit and window
-- (ms), ARGV[4+2b] n = count of hash field/value elements, then n hash elements, then journal pairs
-- Returns {'opened'}, {'exists'} when the id was already used (the journal outlives the hash), or
-- {'exhausted', budget index (0-based), wait_ms}; a refusal writes nothing.
--#include _send_budgets.lua
local challenge, journal = KEYS[1], KEYS[2]
if redis.call('EXISTS', challenge, journal) > 0 then
  return {'exists'}
end
local now, budgets = tonumber(ARGV[2]), tonumber(ARGV[3])
local refusal = budget_refusal(3, 4, budgets, now)
if refusal then
  return refusal
end
take_budgets(3, 4, budgets, now)
local first = 4 + 2 * budgets
local n = tonumber(ARGV[first])
local fields, entry = {}, {}
for i = first + 1, first + n do fields[#fields + 1] = ARGV[i] end
for i = first + n + 1, #ARGV do entry[#entry + 1] = ARGV[i] end
redis.call('HSET', challenge, unpack(fields))
redis.call('PEXPIREAT', challenge, ARGV[1])
redis.call('XADD', journal, '*', unpack(entry))
return {'opened'}
