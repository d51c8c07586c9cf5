-- The user's send unit an outbox entry paid for (decision 0101), given back when the entry ends without any
-- hand-over to the gateway: withheld at its take (take_outbox.lua), dropped because its challenge closed while
-- it waited (record_dispatch.lua, expired), or dead-lettered before a send (record_failed_try.lua: its code
-- expired, its held units missing). The step that queued the code took the unit under the SMS's hold name
-- (_send_budgets.lua): the challenge id for a Start's entry (`send` start), the entry's `hold` for a
-- resend's. The user's budget is in the entry's place (`<place>:sends:<user id>`, as Keyspace.send_budget;
-- the outbox's slot, named here as take_outbox.lua names the user hash). An exact ZREM: a unit given back
-- already (void_challenge.lua, withdraw_resend.lua) or never named (a resend without a hold name, a unit taken
-- before decision 0101: `<time>-<n>`) is not found, and nothing else is given back.

-- Give back the user's unit of the entry `entry_id` when it is in its first hand-out to a dispatcher (its
-- XPENDING delivery count 1): an entry taken again (claimed after a failed try, or from a dispatcher that
-- died) may have been handed to the gateway already, and its unit stays spent. Call before the entry is
-- acknowledged. Returns 1 when a unit was given back, else 0.
local function unit_back(outbox, group, entry_id, user_id)
  local pending = redis.call('XPENDING', outbox, group, entry_id, entry_id, 1)
  if not pending[1] or tonumber(pending[1][4]) ~= 1 or not user_id then
    return 0
  end
  local found = redis.call('XRANGE', outbox, entry_id, entry_id)
  if not found[1] then
    return 0
  end
  local fields, f = found[1][2], {}
  for i = 1, #fields, 2 do f[fields[i]] = fields[i + 1] end
  local unit
  if f.notice then
    return 0  -- a notice takes no unit
  elseif f.hold and f.hold ~= '' then
    unit = f.hold
  elseif f.send == 'start' then
    unit = f.challenge_id
  else
    return 0  -- a resend queued without a hold name: its unit is unnamed
  end
  local place = string.sub(outbox, 1, #outbox - #':outbox')
  return redis.call('ZREM', place .. ':sends:' .. user_id, unit)
end
