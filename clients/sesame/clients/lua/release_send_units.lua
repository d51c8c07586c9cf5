#!lua flags=allow-oom
-- Runs out of memory (decision 0111): it gives back what a refused step took.
-- Give back the units a hold took (docs/decisions/0046): Start's step refused (or answered a retried
-- request id's earlier challenge), Resend's step refused, or the take was refused while the step queued the
-- SMS. A hold already spent is left as it is (its SMS went). When an SMS was queued under the hold, the
-- record stays for the grace as a mark that the hold was withdrawn, so that a dispatcher holding the SMS
-- drops it at once instead of waiting for it; else nothing of the hold is left (a refusal writes nothing).
-- The held sets are named by the record's fields (each a budget's spent set, plus ':held'), in the record's
-- own {sb} slot. KEYS[1] the hold's record; ARGV[1] the hold's name, ARGV[2] how long it stays withdrawn
-- (ms; 0: not marked).
-- Returns the count of units given back.
local record, name = KEYS[1], ARGV[1]
if redis.call('HEXISTS', record, '.spent') == 1 then
  return 0
end
local budgets = redis.call('HKEYS', record)
local given = 0
for _, spent in ipairs(budgets) do
  if spent ~= '.withdrawn' then given = given + redis.call('ZREM', spent .. ':held', name) end
end
redis.call('DEL', record)
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', record, '.withdrawn', '1')
  redis.call('PEXPIRE', record, tonumber(ARGV[2]))
end
return given
