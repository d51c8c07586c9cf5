#!lua flags=allow-oom
-- Runs out of memory (decision 0111): the SMS queued before Redis filled up are sent (their units spent), and
-- what became of each is recorded; bounded by the outbox, which nothing grows out of memory but a Verify's
-- notice.
-- Spend a hold's units before its SMS is handed to the gateway (docs/decisions/0046): each held unit moves
-- to its budget's spent set at the time it was taken, atomically, so that a unit is spent if and only if
-- an SMS is handed over. A hold already spent answers 'spent' again (a retry of the same outbox entry). A
-- hold that lapsed (its SMS waited past the grace: no dispatcher running, a backlog) is taken again now if
-- every budget allows it, else 'exhausted' (the SMS is not sent). A hold given back by its Start or Resend
-- (release_send_units.lua): 'withdrawn'. No record (the take has not run yet, was refused, or its Start
-- crashed before it), or a record without the number the SMS goes to: 'unheld'.
-- The held sets are named by the record's fields (each a budget's spent set, plus ':held'), in the
-- record's own {sb} slot.
-- KEYS[1] the hold's record; ARGV[1] the hold's name, ARGV[2] now (unix ms), ARGV[3] the grace (ms),
-- ARGV[4] the spent set of the number's budget the SMS goes to ('' none to check).
-- Returns 'spent', 'unheld', 'withdrawn' or 'exhausted'.
--#include _send_holds.lua
local record, name = KEYS[1], ARGV[1]
local now, grace, number = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local fields = redis.call('HGETALL', record)
if #fields == 0 then
  return 'unheld'
end
local budgets, spent_at, named = {}, nil, {}
for i = 1, #fields, 2 do
  if fields[i] == '.spent' then
    spent_at = fields[i + 1]
  elseif fields[i] == '.withdrawn' then
    return 'withdrawn'
  else
    local limit, window = string.match(fields[i + 1], '^(%d+):(%d+)$')
    budgets[#budgets + 1] = {fields[i], tonumber(limit), tonumber(window)}
    named[fields[i]] = true
  end
end
if spent_at then
  return 'spent'
end
if number ~= '' and not named[number] then
  return 'unheld'
end
-- Each held unit's time, read once (decision 0061): it says whether the hold lapsed, and when its unit was taken.
local lapsed, held_at = false, {}
for i, budget in ipairs(budgets) do
  local at = redis.call('ZSCORE', budget[1] .. ':held', name)
  held_at[i] = tonumber(at)
  if not at or tonumber(at) <= now - grace then lapsed = true end
end
if lapsed then
  -- Taken again now, all or nothing: the hold no longer counted, so the budgets may have filled meanwhile.
  for _, budget in ipairs(budgets) do
    local spent, held = budget[1], budget[1] .. ':held'
    redis.call('ZREM', held, name)
    if units_counting(spent, held, now, budget[3], grace) >= budget[2] then
      return 'exhausted'
    end
  end
  for _, budget in ipairs(budgets) do unit_spent(budget[1], name, now, now, budget[3]) end
else
  for i, budget in ipairs(budgets) do
    redis.call('ZREM', budget[1] .. ':held', name)
    unit_spent(budget[1], name, held_at[i], now, budget[3])
  end
end
-- What a retry of the same SMS needs is that it was spent: the budgets' names go (memory per flow). The
-- mark first, so that the hash never empties: it keeps its expiry (decision 0061).
redis.call('HSET', record, '.spent', now)
local names = {}
for i, budget in ipairs(budgets) do names[i] = budget[1] end
if #names > 0 then redis.call('HDEL', record, unpack(names)) end
return 'spent'
