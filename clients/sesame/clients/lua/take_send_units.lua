-- Hold one unit of the number's, the caller's and the global send budgets for one SMS, in the {sb} slot
-- (docs/decisions/0046), sent concurrently with the step that opens the challenge or takes the resend (the
-- user's own unit is taken in that step, in the user's slot). Refuses when a budget is spent, writing
-- nothing; else records a hold named by the SMS (the challenge id, or the challenge id and the resend's
-- token) in each budget, and the hold's record: which budgets, with each one's limit and window. The
-- dispatcher spends the holds before it hands the SMS over (spend_send_units.lua); a hold never spent stops
-- counting after the grace. Taken again under the same name, a budget already held is held once, and a hold
-- already spent (its SMS handed over: spend_send_units.lua keeps only its mark) holds nothing again.
-- KEYS[1] the hold's record (a hash: budget -> 'limit:window', '.spent' once spent), then for each of b
-- budgets its spent set and its held set; then, for each budget to drop from the hold (the number Start
-- expected, when its step found another), its spent set and its held set. All in the {sb} slot.
-- ARGV[1] the hold's name, ARGV[2] now (unix ms), ARGV[3] the grace (ms), ARGV[4] until when the record is
-- kept at least (unix ms: the challenge's expiry), ARGV[5] b, ARGV[6 .. 5+2b] each budget's limit and window
-- (ms). Returns {'held'}, {'withdrawn'}, {'spent'} or {'exhausted', budget index (0-based), wait_ms}.
--#include _send_holds.lua
--#include _out_of_memory.lua
local record, name = KEYS[1], ARGV[1]
local now, grace, keep = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local b = tonumber(ARGV[5])
-- The record's fields this take reads, in one HMGET (decision 0061): '.withdrawn', '.spent', and which
-- budgets it holds already (`has`, kept up to date below as the drops and the holds change them).
local asked = {'.withdrawn', '.spent'}
for i = 0, b - 1 do asked[#asked + 1] = KEYS[2 + 2 * i] end
local found = redis.call('HMGET', record, unpack(asked))
if found[1] then
  return {'withdrawn'}  -- given back already (a late take after its Start's release): holds nothing
elseif found[2] then
  return {'spent'}  -- a retried Start or Resend after its SMS left (decision 0065): nothing to hold
end
local has = {}
for i = 0, b - 1 do
  if found[3 + i] then has[KEYS[2 + 2 * i]] = true end
end
for i = 0, b - 1 do
  local spent, held = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
  local limit, window = tonumber(ARGV[6 + 2 * i]), tonumber(ARGV[7 + 2 * i])
  if not has[spent] then
    local counting = units_counting(spent, held, now, window, grace)
    if counting >= limit then
      return {'exhausted', i, units_wait(spent, held, now, window, grace, counting, limit)}
    end
  end
end
-- The drops' ZREM and the held sets' ZREMRANGEBYSCORE, writes that free, come first: out of memory, every
-- Start's and Resend's hold passed whole (decision 0111). Refused here, before anything is written.
refuse_out_of_memory(record)
for i = 2 + 2 * b, #KEYS - 1, 2 do
  redis.call('ZREM', KEYS[i + 1], name)
  redis.call('HDEL', record, KEYS[i])
  has[KEYS[i]] = nil
end
local holding = {}
for i = 0, b - 1 do
  local spent, held = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
  if not has[spent] then
    redis.call('ZREMRANGEBYSCORE', held, '-inf', now - grace)
    redis.call('ZADD', held, now, name)
    -- The held set lives until its newest hold's grace ends: made later (no expiry yet) or sooner. Its
    -- time to live against the grace, both durations: Redis's clock may differ from the worker's (0103).
    if redis.call('PTTL', held) < grace then redis.call('PEXPIRE', held, grace) end
    has[spent] = true
    holding[#holding + 1] = spent
    holding[#holding + 1] = ARGV[6 + 2 * i] .. ':' .. ARGV[7 + 2 * i]
  end
end
if #holding > 0 then redis.call('HSET', record, unpack(holding)) end
expire_at(record, math.max(keep, now + grace), now)
return {'held'}
